"""The worker handler on fakes: a job runs once and publishes its usage; redeliveries, bad messages, unknown
deployments, expired jobs, permanent and transient errors, poison, a usage stream that is down, and a generation
cancelled while it runs (billed for the work done, once)."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import timedelta

import pytest

from shared.adapters.memory import MemoryDeploymentStats, MemoryJobQueue, MemoryJobStore, MemoryUsageLog
from shared.bootstrap import Inferq
from shared.domain.errors import InvalidInput, ModelError, StorageUnavailable
from shared.domain.jobs import Job, JobStatus, utcnow
from shared.schemas.messages import JobMessage
from shared.schemas.usage import Meter, UsageEvent
from tests.unit.fakes import (
    ACME,
    CHAT,
    EMBED,
    GLOBEX,
    SCORER,
    SHADOW,
    FakeModels,
    fake_app,
    logged,
    logged_bodies,
    run_next,
    runtime,
    submit,
    take,
    unit_settings,
)


def test_a_job_runs_records_its_result_and_publishes_one_usage_event_per_meter() -> None:
    app = fake_app()
    job = submit(app, {"input": ["a b", "c d e"]})
    done = run_next(app)
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 1 and done.error is None
    assert done.result is not None and [d["embedding"] for d in done.result["data"]] == [[2], [3]]
    assert done.result["usage"] == {"prompt_tokens": 5, "total_tokens": 5}
    (event,) = done.usage
    assert (event.id, event.tenant, event.endpoint, event.deployment, event.model, event.meter, event.tokens) == (
        f"{job.id}:input_tokens",
        "acme",
        EMBED,
        EMBED,
        "minilm",
        Meter.INPUT_TOKENS,
        5,
    )
    assert done.usage_published and logged(app) == [event]
    assert app.gateway.get_job(ACME, job.id) == done


def test_a_generation_publishes_both_meters_and_a_script_one_request() -> None:
    app = fake_app()
    submit(app, {"prompt": "say hi", "max_tokens": 3}, CHAT)
    chat = run_next(app)
    assert chat.result == {"text": "w0 w1 w2", "prompt_tokens": 2, "completion_tokens": 3}
    assert {e.meter: e.tokens for e in chat.usage} == {Meter.INPUT_TOKENS: 2, Meter.OUTPUT_TOKENS: 3}
    submit(app, {"data": [1]}, SCORER)
    score = run_next(app)
    assert score.result == {"output": [1]} and [(e.meter, e.tokens) for e in score.usage] == [(Meter.REQUESTS, 1)]
    assert len(logged(app)) == 3


def test_the_outcome_is_recorded_for_the_deployments_view() -> None:
    stats = MemoryDeploymentStats()
    app = fake_app(stats=stats)
    job = submit(app, {"input": "a b"})
    run_next(app)
    (outcome,) = stats.outcomes(utcnow() - timedelta(hours=1), utcnow() + timedelta(hours=1))
    assert (outcome.job_id, outcome.deployment, outcome.status, dict(outcome.usage)) == (
        job.id,
        EMBED,
        "succeeded",
        {"input_tokens": 2},
    )


def test_a_redelivery_of_a_finished_job_changes_nothing() -> None:
    app = fake_app()
    submit(app, {"input": "a b"})
    body = take(app)
    app.worker.process(body)
    job_id = json.loads(body)["job_id"]
    first = app.store.get(job_id)
    app.worker.process(body)  # at-least-once: the same message again
    assert app.store.get(job_id) == first  # not even rewritten (same etag)
    assert runtime(app, EMBED).steps == 1 and len(logged(app)) == 1


def test_a_redelivery_after_a_worker_died_mid_job_runs_it_again_once() -> None:
    app = fake_app()
    job = submit(app, {"input": "a"})
    body = take(app)
    app.store.replace(job.start())  # a worker took it and died
    app.worker.process(body)
    done = app.store.get(job.id)
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.attempts == 2
    assert len(logged(app)) == 1


def test_an_invalid_message_fails_its_job_with_the_reason() -> None:
    app = fake_app()
    job = submit(app, {"input": "a"})
    take(app)
    app.worker.process(json.dumps({"v": 1, "job_id": job.id, "tenant": "acme"}))  # no deployment, no payload
    failed = app.store.get(job.id)
    assert failed is not None and failed.status is JobStatus.FAILED and failed.error is not None
    assert failed.error.code == "InvalidMessage" and "deployment" in failed.error.message


@pytest.mark.parametrize("body", ["not json", b"\xff\xfe", "[]", '{"v": 2}', json.dumps({"job_id": 7})])
def test_a_message_naming_no_job_is_dropped(body: str | bytes) -> None:
    app = fake_app()
    app.worker.process(body)  # returns: acknowledged, never a poison loop
    assert logged(app) == []


def test_a_message_for_an_unknown_deployment_fails_its_job() -> None:
    app = fake_app()
    # A producer that writes to the queue directly: the job comes into being with its message.
    body = JobMessage(job_id="job_p1", tenant="acme", deployment="nope", payload={"input": "a"}).model_dump_json()
    app.worker.process(body)
    job = app.gateway.get_job(ACME, "job_p1")
    assert job.status is JobStatus.FAILED and job.error is not None and job.error.code == "NotFound"
    assert "nope" in job.error.message


def test_a_producers_message_for_a_known_deployment_runs() -> None:
    app = fake_app()
    body = JobMessage(job_id="job_p2", tenant="acme", deployment=EMBED.upper(), payload={"input": "a"})
    app.worker.process(body.model_dump_json())
    job = app.gateway.get_job(ACME, "job_p2")
    assert job.status is JobStatus.SUCCEEDED and job.endpoint == EMBED


def test_a_message_for_an_unknown_tenant_or_another_tenants_job_is_dropped() -> None:
    app = fake_app()
    stranger = JobMessage(job_id="job_x", tenant="initech", deployment=EMBED, payload={"input": "a"})
    app.worker.process(stranger.model_dump_json())
    assert app.store.get("job_x") is None
    job = submit(app, {"input": "a"})
    take(app)
    forged = JobMessage(job_id=job.id, tenant="globex", deployment=EMBED, payload={"input": "a"})
    app.worker.process(forged.model_dump_json())
    assert app.store.get(job.id) == job and logged(app) == []


def test_an_expired_job_is_not_run() -> None:
    app = fake_app(unit_settings(job_ttl_s=0))
    submit(app, {"input": "a"})
    expired = run_next(app)
    assert expired.status is JobStatus.EXPIRED and expired.error is not None and expired.error.code == "Expired"
    assert expired.usage == () and logged(app) == []


@pytest.mark.parametrize(
    ("error", "code"),
    [(ModelError("the model refused the input"), "ModelError"), (InvalidInput("bad input"), "InvalidInput")],
)
def test_a_permanent_error_fails_the_job_with_its_reason(error: Exception, code: str) -> None:
    app = fake_app()
    submit(app, {"input": "a"})
    runtime(app, EMBED).errors.append(error)
    failed = run_next(app)  # returns: the message is acknowledged, not retried
    assert failed.status is JobStatus.FAILED and failed.error is not None
    assert (failed.error.code, failed.error.message) == (code, str(error))
    assert failed.usage == () and logged(app) == []


def test_the_worker_checks_the_payload_again() -> None:
    app = fake_app()
    submit(app, {"input": []})  # a producer may queue anything
    failed = run_next(app)
    assert failed.status is JobStatus.FAILED and failed.error is not None and failed.error.code == "InvalidInput"


def test_a_claim_checked_payload_that_is_gone_fails_the_job() -> None:
    app = fake_app(unit_settings(inline_payload_max_bytes=8))
    job = submit(app, {"input": "a b c d"})
    assert job.payload_ref is not None
    app.blobs.delete(job.payload_ref)
    failed = run_next(app)
    assert failed.status is JobStatus.FAILED and failed.error is not None and "missing" in failed.error.message


def test_a_deployment_whose_model_does_not_load_fails_its_jobs() -> None:
    app = fake_app(models=FakeModels(broken=("fake://minilm",)))
    submit(app, {"input": "a"})
    failed = run_next(app)
    assert failed.status is JobStatus.FAILED and failed.error is not None
    assert failed.error.code == "DeploymentUnavailable" and "fake://minilm" in failed.error.message


def test_a_transient_error_is_raised_for_a_redelivery_and_noted_on_the_job() -> None:
    app = fake_app()
    job = submit(app, {"input": "a"})
    body = take(app)
    runtime(app, EMBED).errors.append(StorageUnavailable("model cache busy"))
    with pytest.raises(StorageUnavailable):
        app.worker.process(body)
    noted = app.store.get(job.id)
    assert noted is not None and noted.status is JobStatus.RUNNING
    assert noted.last_error == "StorageUnavailable: model cache busy"
    app.worker.process(body)  # the queue's redelivery
    done = app.store.get(job.id)
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.attempts == 2


def test_an_unexpected_error_is_retried_too() -> None:
    app = fake_app()
    job = submit(app, {"input": "a"})
    body = take(app)
    runtime(app, EMBED).errors.append(RuntimeError("bug"))
    with pytest.raises(RuntimeError):
        app.worker.process(body)
    noted = app.store.get(job.id)
    assert noted is not None and noted.last_error == "RuntimeError: bug" and not noted.status.terminal


def test_a_poisoned_message_fails_its_job_with_the_last_reason() -> None:
    app = fake_app()
    job = submit(app, {"input": "a"})
    body = take(app)
    runtime(app, EMBED).errors.extend([StorageUnavailable("down")] * 5)
    for _ in range(5):
        with pytest.raises(StorageUnavailable):
            app.worker.process(body)
    app.worker.fail_poisoned(body)  # the host moved it to the poison queue
    failed = app.store.get(job.id)
    assert failed is not None and failed.status is JobStatus.FAILED and failed.error is not None
    assert failed.error.code == "PoisonMessage"
    assert failed.error.message == "Failed after 5 deliveries; last error: StorageUnavailable: down"
    app.worker.fail_poisoned(body)  # again: a terminal job stays as it is
    assert app.store.get(job.id) == failed


def test_a_poisoned_message_of_a_finished_job_changes_nothing() -> None:
    app = fake_app()
    submit(app, {"input": "a"})
    body = take(app)
    app.worker.process(body)
    done = app.store.get(json.loads(body)["job_id"])
    app.worker.fail_poisoned(body)
    app.worker.fail_poisoned("not json")
    assert app.store.get(json.loads(body)["job_id"]) == done


class DownUsageLog(MemoryUsageLog):
    """The in-memory usage log, refusing events while `down`."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    def publish(self, events: Sequence[UsageEvent]) -> None:
        if self.down:
            raise StorageUnavailable("event hub unavailable")
        super().publish(events)


def test_usage_that_cant_be_published_is_kept_with_the_job_and_published_later() -> None:
    stream = DownUsageLog()
    app = fake_app(stream=stream)
    job = submit(app, {"input": "a b c"})
    done = run_next(app)
    assert done.status is JobStatus.SUCCEEDED and not done.usage_published  # the job succeeds all the same
    assert [j.id for j in app.store.unpublished_usage(10)] == [job.id] and logged(app) == []
    assert app.worker.publish_pending_usage() == 0  # still down: kept
    stream.down = False
    assert app.worker.publish_pending_usage() == 1
    published = app.store.get(job.id)
    assert published is not None and published.usage_published and logged(app) == list(done.usage)
    assert app.store.unpublished_usage(10) == [] and app.worker.publish_pending_usage() == 0


def test_a_generation_cancelled_while_it_runs_bills_the_tokens_it_generated_once() -> None:
    app = fake_app()
    job = submit(app, {"prompt": "one two three four", "max_tokens": 8}, CHAT)
    body = take(app)
    chat = runtime(app, CHAT)

    def client_leaves_after_three_tokens() -> None:
        if chat.steps == 3:
            app.gateway.cancel(ACME, job.id)

    chat.during = client_leaves_after_three_tokens
    app.worker.process(body)
    cancelled = app.gateway.get_job(ACME, job.id)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.result is None and chat.steps == 3
    assert {e.meter: e.tokens for e in cancelled.usage} == {Meter.INPUT_TOKENS: 4, Meter.OUTPUT_TOKENS: 3}
    assert cancelled.usage_published and logged(app) == list(cancelled.usage)
    app.worker.process(body)  # a redelivery: nothing runs, nothing more is billed
    assert app.gateway.get_job(ACME, job.id) == cancelled and chat.steps == 3 and len(logged(app)) == 2
    bodies = logged_bodies(app)
    assert app.billing.ingest_usage(bodies + bodies).billed == 2  # each event once, however often delivered


def test_a_mirrored_job_runs_keeps_no_result_and_its_usage_is_marked_mirrored() -> None:
    app = fake_app()
    job = app.gateway.submit(ACME, app.gateway.route(EMBED, None), {"input": "a b"}).job
    live, mirror = run_next(app), run_next(app)
    assert live.id == job.id and live.result is not None and not live.mirrored
    assert mirror.deployment == SHADOW and mirror.status is JobStatus.SUCCEEDED and mirror.result is None
    assert [(e.deployment, e.endpoint, e.mirrored) for e in logged(app)] == [
        (EMBED, EMBED, False),
        (SHADOW, EMBED, True),
    ]
    assert app.billing.ingest_usage(logged_bodies(app)).billed == 1  # recorded, never billed


class CountingJobStore(MemoryJobStore):
    """Counts writes; fails the next `fail` replaces that finish a job (a crash after the usage was published)."""

    def __init__(self) -> None:
        super().__init__()
        self.replaces = 0
        self.fail = 0

    def replace(self, job: Job) -> Job:
        if job.status.terminal and self.fail:
            self.fail -= 1
            raise StorageUnavailable("the store went away before the job's final write")
        self.replaces += 1
        return super().replace(job)


def test_deterministic_usage_is_published_first_so_the_job_is_finished_in_one_write() -> None:
    store = CountingJobStore()
    app = fake_app(store=store)
    submit(app, {"input": "a b c"})
    done = run_next(app)
    assert done.status is JobStatus.SUCCEEDED and done.usage_published and len(logged(app)) == 1
    assert store.replaces == 2  # running, then succeeded with its usage published: no later write to mark it
    assert app.store.unpublished_usage(10) == []


def test_a_crash_between_publishing_and_the_final_write_bills_the_same_numbers_once() -> None:
    store = CountingJobStore()
    app = fake_app(store=store)
    job = submit(app, {"input": "a b c"})
    (message,) = app.queue.receive(1, 60)
    store.fail = 1
    with pytest.raises(StorageUnavailable):
        app.worker.process(message.body)  # published, then the final write failed: the queue redelivers
    app.worker.process(message.body)
    done = app.store.get(job.id)
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.attempts == 2
    first, second = logged(app)  # published twice, under one event id: the ledger bills it once
    assert first == second.model_copy(update={"time": first.time}) and first.id == f"{job.id}:input_tokens"
    assert done.usage[0].tokens == first.tokens == 3 and done.result is not None
    assert done.result["usage"]["prompt_tokens"] == first.tokens  # told = billed


def test_a_generation_keeps_its_usage_with_the_job_before_publishing_it() -> None:
    store = CountingJobStore()
    app = fake_app(store=store)
    submit(app, {"prompt": "say hi", "max_tokens": 3}, CHAT)
    done = run_next(app)
    assert done.usage_published and len(logged(app)) == 2
    assert store.replaces == 3  # running, succeeded with usage kept (unpublished), then marked published


def running_held(app: Inferq, body: str, release: threading.Event) -> threading.Thread:
    """The worker running `body`'s job in a thread, held inside the model until `release` is set."""
    inside = threading.Event()

    def hold_the_first() -> None:
        if not inside.is_set():
            inside.set()
            assert release.wait(5)

    runtime(app, EMBED).during = hold_the_first
    running = threading.Thread(target=app.worker.process, args=(body,))
    running.start()
    assert inside.wait(5)
    return running


def test_a_tenant_past_its_running_bound_is_deferred_while_other_tenants_run() -> None:
    clock = [1000.0]
    settings = unit_settings(tenant_max_running=1, tenant_defer_s=30, worker_concurrency=2)  # 1 slot kept free
    app = fake_app(settings, queue=MemoryJobQueue(clock=lambda: clock[0]))
    first, second = submit(app, {"input": "a"}, key="1"), submit(app, {"input": "b"}, key="2")
    other = submit(app, {"input": "c"}, caller=GLOBEX)
    bodies = [take(app) for _ in range(3)]
    release = threading.Event()
    running = running_held(app, bodies[0], release)  # acme's first job is running
    app.worker.process(bodies[1])  # acme's second: deferred, not run
    app.worker.process(bodies[2])  # globex's runs at once
    release.set()
    running.join(5)
    status = {j.id: app.store.get(j.id).status for j in (first, second, other)}  # type: ignore[union-attr]
    assert status == {first.id: JobStatus.SUCCEEDED, second.id: JobStatus.QUEUED, other.id: JobStatus.SUCCEEDED}
    assert app.queue.receive(10, 60) == []  # the deferred message is invisible for tenant_defer_s
    clock[0] += 30
    (message,) = app.queue.receive(10, 60)
    assert message.dequeue_count == 1  # a new message: the deferral was no failed delivery
    app.worker.process(message.body)
    assert app.store.get(second.id).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]


def test_a_lone_tenant_past_its_bound_runs_while_slots_stay_free_for_others() -> None:
    app = fake_app(unit_settings(tenant_max_running=1, worker_concurrency=3))  # 1 of its own + 1 + 1 kept free
    first, second = submit(app, {"input": "a"}, key="1"), submit(app, {"input": "b"}, key="2")
    bodies = [take(app) for _ in range(2)]
    release = threading.Event()
    running = running_held(app, bodies[0], release)
    app.worker.process(bodies[1])  # past its bound of 1, but 2 of 3 slots are free: it runs
    release.set()
    running.join(5)
    assert app.store.get(second.id).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]
    assert app.store.get(first.id).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]
    assert app.queue.receive(10, 0) == []  # nothing deferred
