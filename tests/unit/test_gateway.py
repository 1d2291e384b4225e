"""The gateway handler on fakes: what a submit queues, idempotency, claim-check, mirrors, admission (budget and
rate limits), the job API's tenant isolation and cancel rules, and waiting on job signals, not on the store."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

import shared.bootstrap
from shared.adapters.memory import MemoryJobQueue, MemoryJobStore
from shared.adapters.signals import InProcessJobSignals
from shared.application.gateway import Submitted
from shared.bootstrap import Inferq
from shared.domain.auth import Caller, hash_key
from shared.domain.errors import (
    AuthError,
    Conflict,
    InvalidInput,
    NotFound,
    QuotaExceeded,
    RateLimited,
    StorageUnavailable,
)
from shared.domain.jobs import Job, JobStatus, new_job_id
from shared.domain.ports import Signal
from shared.runtimes.streams import StreamWriter, chunk_key
from shared.schemas.messages import JobMessage
from tests.conftest import ADMIN_KEY, KEYS
from tests.unit.conftest import DiskTouched
from tests.unit.fakes import (
    ACME,
    BROKE,
    CHAT,
    EMBED,
    GLOBEX,
    LIMITED,
    METERED,
    NO_DISK,
    SCORER,
    SHADOW,
    fake_app,
    logged_bodies,
    queued,
    run_next,
    runtime,
    submit,
    take,
    unit_settings,
)


# --- the app on fakes ---------------------------------------------------------------------------------------
def test_the_app_on_fakes_runs_a_job_and_bills_it_with_no_database_and_no_files() -> None:
    app = fake_app()
    submit(app, {"input": "a b"})
    assert run_next(app).status is JobStatus.SUCCEEDED
    assert app.billing.ingest_usage(logged_bodies(app)).billed == 1
    assert not NO_DISK.exists()


def test_a_missing_adapter_would_open_the_database_and_the_unit_tests_refuse_it() -> None:
    # The guard in conftest has teeth: without an in-memory store, bootstrap reaches for SQLite.
    with pytest.raises(DiskTouched, match="SQLite"):
        fake_app(store=None)
    assert shared.bootstrap.SqliteDatabase.__name__ == "build"  # the refusing stand-in, not the real class


# --- who, where -------------------------------------------------------------------------------------------
def test_keys_map_to_tenants_and_the_admin_key_to_an_admin() -> None:
    gw = fake_app().gateway
    assert gw.authenticate(KEYS["acme"]) == Caller("acme", key_id=hash_key(KEYS["acme"])[:8])
    assert gw.authenticate(ADMIN_KEY).is_admin
    for key in (None, "", "nope"):
        with pytest.raises(AuthError):
            gw.authenticate(key)


def test_the_edge_check_is_the_deployments_kind() -> None:
    gw = fake_app().gateway
    with pytest.raises(InvalidInput) as caught:
        gw.check(gw.route(EMBED, None), {"input": ""}, "error")
    assert caught.value.loc == ("body", "input")
    assert gw.check(gw.route(SCORER, None), {"x": 1}, "error") == {"data": {"x": 1}}


# --- submit -------------------------------------------------------------------------------------------------
def test_a_submit_records_a_queued_job_and_queues_one_versioned_message_carrying_the_payload() -> None:
    app = fake_app()
    payload = {"input": ["a b", "c"], "encoding_format": "float"}
    submitted = app.gateway.submit(ACME, app.config.deployment(EMBED), payload)
    job = submitted.job
    assert submitted.created and job.status is JobStatus.QUEUED and job.tenant == "acme"
    assert (job.deployment, job.endpoint, job.mirrored, job.payload_ref) == (EMBED, EMBED, False, None)
    assert app.store.get(job.id) == job
    (body,) = queued(app)
    assert json.loads(body) == {"v": 1, "job_id": job.id, "tenant": "acme", "deployment": EMBED, "payload": payload}
    assert JobMessage.model_validate_json(body).payload == payload


def test_an_idempotency_key_repeat_returns_the_same_job_and_queues_nothing_more() -> None:
    app = fake_app()
    first = app.gateway.submit(ACME, app.config.deployment(EMBED), {"input": "a"}, "key-1")
    again = app.gateway.submit(ACME, app.config.deployment(EMBED), {"input": "a"}, "key-1")
    assert again.job.id == first.job.id and first.created and not again.created
    assert len(queued(app)) == 1
    with pytest.raises(Conflict, match="different request"):
        app.gateway.submit(ACME, app.config.deployment(EMBED), {"input": "b"}, "key-1")
    assert len(queued(app)) == 1
    # Keys are per tenant: another tenant's same key is another job.
    theirs = app.gateway.submit(GLOBEX, app.config.deployment(EMBED), {"input": "a"}, "key-1")
    assert theirs.created and theirs.job.id != first.job.id and theirs.job.tenant == "globex"


def test_an_idempotent_repeat_of_a_finished_job_returns_it_finished() -> None:
    app = fake_app()
    job = submit(app, {"input": "a b"}, key="k")
    run_next(app)
    again = app.gateway.submit(ACME, app.config.deployment(EMBED), {"input": "a b"}, "k")
    assert not again.created and again.job.status is JobStatus.SUCCEEDED and again.job.id == job.id
    assert queued(app) == []


def test_a_payload_above_the_inline_limit_goes_to_a_blob_and_the_message_carries_its_reference() -> None:
    app = fake_app(unit_settings(inline_payload_max_bytes=64))
    payload = {"input": ["word " * 20]}
    job = submit(app, payload)
    (body,) = queued(app)
    message = JobMessage.model_validate_json(body)
    assert message.payload is None and message.payload_ref == f"payloads/{job.id}.json" == job.payload_ref
    assert json.loads(app.blobs.get(message.payload_ref)) == payload
    done = run_next(app)
    assert done.status is JobStatus.SUCCEEDED and done.result is not None
    assert done.result["data"][0]["embedding"] == [20]
    with pytest.raises(NotFound):
        app.blobs.get(message.payload_ref)  # nobody will run it again: the claim-checked payload goes


def test_a_payload_at_the_inline_limit_stays_in_the_message() -> None:
    payload = {"input": "a b"}
    size = len(json.dumps(payload, separators=(",", ":")).encode())
    app = fake_app(unit_settings(inline_payload_max_bytes=size))
    submit(app, payload)
    (body,) = queued(app)
    assert JobMessage.model_validate_json(body).payload == payload and app.blobs.list_keys("", 10) == []


class BrokenQueue(MemoryJobQueue):
    def send(self, body: str) -> None:
        raise StorageUnavailable("queue unavailable")


def test_a_job_whose_message_cant_be_queued_fails_and_the_error_reaches_the_caller() -> None:
    app = fake_app(queue=BrokenQueue("jobs"))
    with pytest.raises(StorageUnavailable):
        submit(app, {"input": "a"}, key="k")
    job = app.store.get(new_job_id("acme", "k"))
    assert job is not None and job.status is JobStatus.FAILED and job.error is not None
    assert job.error.code == "EnqueueFailed"


# --- mirrors ------------------------------------------------------------------------------------------------
def test_a_routed_request_is_mirrored_as_a_job_of_its_own_that_its_tenant_cant_see() -> None:
    app = fake_app()
    route = app.gateway.route(EMBED, None)
    assert [d.name for d in route.mirrors] == [SHADOW]  # the endpoint mirrors 100%
    payload = {"input": "a b", "stream": True}
    job = app.gateway.submit(ACME, route, payload).job
    messages = [JobMessage.model_validate_json(b) for b in queued(app)]
    assert [(m.job_id, m.deployment) for m in messages] == [(job.id, EMBED), (f"{job.id}-mirror-{SHADOW}", SHADOW)]
    assert messages[1].payload == {"input": "a b"}  # a copy is never streamed
    mirror = app.store.get(f"{job.id}-mirror-{SHADOW}")
    assert mirror is not None and mirror.mirrored and mirror.endpoint == EMBED and mirror.tenant == "acme"
    with pytest.raises(NotFound):
        app.gateway.get_job(ACME, mirror.id)


def test_a_request_that_names_its_deployment_is_not_mirrored() -> None:
    app = fake_app()
    route = app.gateway.route(EMBED, EMBED.upper())
    assert route.pinned and route.mirrors == ()
    app.gateway.submit(ACME, route, {"input": "a"})
    assert len(queued(app)) == 1


def test_a_mirror_that_cant_be_queued_does_not_fail_the_live_request() -> None:
    class FailsSecond(MemoryJobQueue):
        def send(self, body: str) -> None:
            if self.count():
                raise StorageUnavailable("queue unavailable")
            super().send(body)

    app = fake_app(queue=FailsSecond("jobs"))
    job = app.gateway.submit(ACME, app.gateway.route(EMBED, None), {"input": "a"}).job
    assert job.status is JobStatus.QUEUED and len(queued(app)) == 1
    mirror = app.store.get(f"{job.id}-mirror-{SHADOW}")
    assert mirror is not None and mirror.status is JobStatus.FAILED  # recorded, and ended


# --- admission ----------------------------------------------------------------------------------------------
def test_a_tenant_past_its_budget_is_refused_before_anything_is_queued() -> None:
    app = fake_app()
    with pytest.raises(QuotaExceeded) as caught:
        submit(app, {"input": "a"}, caller=BROKE)
    assert caught.value.code == "OutOfQuota" and caught.value.retry_after_s >= 1
    assert queued(app) == []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_tenant_over_its_request_rate_is_refused_until_the_bucket_refills() -> None:
    clock = Clock()
    app = fake_app(monotonic=clock)
    submit(app, {"input": "a"}, caller=LIMITED)
    submit(app, {"input": "a"}, caller=LIMITED)
    with pytest.raises(RateLimited) as caught:
        submit(app, {"input": "a"}, caller=LIMITED)
    assert caught.value.retry_after_s == 30  # one request of 2 a minute comes back in 30 s
    assert len(queued(app)) == 2
    submit(app, {"input": "a"}, caller=ACME)  # other tenants are not limited by it
    clock.now += 30
    submit(app, {"input": "a"}, caller=LIMITED)
    assert len(queued(app)) == 4


def test_the_token_estimate_charged_at_the_edge_is_settled_to_the_jobs_real_usage() -> None:
    app = fake_app(monotonic=Clock())
    first = app.gateway.submit(METERED, app.config.deployment(EMBED), {"input": "a b c d e"})
    assert first.estimated_tokens == 50 and _remaining(first) == 50
    done = run_next(app)
    app.gateway.settle(first, done)  # 5 tokens used: 45 of the 50 come back
    second = app.gateway.submit(METERED, app.config.deployment(EMBED), {"input": "a"})
    assert _remaining(second) == 100 - 5 - 10
    with pytest.raises(RateLimited):
        app.gateway.submit(METERED, app.config.deployment(EMBED), {"input": " ".join(["w"] * 9)})  # 90 > 85


def _remaining(submitted: Submitted) -> int:
    rate = submitted.rate
    assert rate is not None
    (tokens,) = [limit for limit in rate.limits if limit.name == "tokens"]
    return int(tokens.remaining)


# --- the job API --------------------------------------------------------------------------------------------
def test_a_tenant_never_sees_nor_cancels_another_tenants_job() -> None:
    app = fake_app()
    job = submit(app, {"input": "a"})
    with pytest.raises(NotFound):
        app.gateway.get_job(GLOBEX, job.id)
    with pytest.raises(NotFound):
        app.gateway.cancel(GLOBEX, job.id)
    with pytest.raises(NotFound):
        app.gateway.read_stream(GLOBEX, job.id, 0)
    assert app.gateway.get_job(ACME, job.id).status is JobStatus.QUEUED
    with pytest.raises(NotFound):
        app.gateway.get_job(ACME, "job_missing")


def test_a_queued_job_can_be_cancelled_once_and_its_message_then_changes_nothing() -> None:
    app = fake_app()
    job = submit(app, {"input": "a"})
    cancelled = app.gateway.cancel(ACME, job.id)
    assert cancelled.status is JobStatus.CANCELLED and app.store.get(job.id) == cancelled
    with pytest.raises(Conflict):
        app.gateway.cancel(ACME, job.id)
    assert run_next(app) == cancelled  # the worker finds it ended: no run, no usage
    assert runtime(app, EMBED).steps == 0 and cancelled.usage == ()


@pytest.mark.parametrize(("deployment", "payload", "cancellable"), [(EMBED, {"input": "a"}, False), (CHAT, {}, True)])
def test_a_running_job_can_be_cancelled_only_when_its_kind_checks_for_it(
    deployment: str, payload: dict[str, object], cancellable: bool
) -> None:
    app = fake_app()
    job = submit(app, payload, deployment)
    seen: list[JobStatus | str] = []

    def cancel_while_running() -> None:
        if seen:
            return
        assert app.gateway.get_job(ACME, job.id).status is JobStatus.RUNNING
        try:
            seen.append(app.gateway.cancel(ACME, job.id).status)
        except Conflict as exc:
            seen.append(exc.code)

    runtime(app, deployment).during = cancel_while_running
    done = run_next(app)
    if cancellable:
        assert seen == [JobStatus.CANCELLED] and done.status is JobStatus.CANCELLED
    else:
        assert seen == ["Conflict"] and done.status is JobStatus.SUCCEEDED


def _stream(app: Inferq, job_id: str, *texts: str) -> None:
    writer = StreamWriter(app.blobs, job_id)
    for n, text in enumerate(texts, start=1):
        writer.add(text)
        writer.flush(1, n)


def test_a_stream_its_client_left_is_cancelled_and_the_chunks_it_relayed_deleted() -> None:
    app = fake_app()
    job = submit(app, {"prompt": "hi", "stream": True}, CHAT)
    _stream(app, job.id, "a", "b")
    chunks, same = app.gateway.read_stream(ACME, job.id, 0)
    assert [c.text for c in chunks] == ["a", "b"] and same == job
    with pytest.raises(NotFound):
        app.gateway.end_stream(GLOBEX, job.id, 1, complete=False)
    app.gateway.end_stream(ACME, job.id, 1, complete=False)
    assert app.gateway.get_job(ACME, job.id).status is JobStatus.CANCELLED
    # The chunk not relayed is its worker's to discard when it notices the cancel.
    assert app.blobs.list_keys(f"streams/{job.id}/", 10) == [chunk_key(job.id, 1)]


def test_a_stream_that_ended_leaves_no_chunks_whoever_relayed_them() -> None:
    app = fake_app()
    job = submit(app, {"prompt": "hi", "stream": True}, CHAT)
    _stream(app, job.id, "a", "b", "c")
    run_next(app)
    app.gateway.end_stream(ACME, job.id, 1, complete=False)  # the client left after one chunk, too late
    assert app.gateway.get_job(ACME, job.id).status is JobStatus.SUCCEEDED
    assert app.blobs.list_keys("streams/", 10) == []


def test_a_succeeded_job_is_rendered_by_its_kind() -> None:
    app = fake_app()
    submit(app, {"data": {"a": [1, 2]}}, SCORER)
    done = run_next(app)
    assert done.result == {"output": {"a": [1, 2]}}
    assert app.gateway.render(done) == {"a": [1, 2]}


# --- waiting ------------------------------------------------------------------------------------------------
class CountingJobStore(MemoryJobStore):
    """Records which thread read which job."""

    def __init__(self) -> None:
        super().__init__()
        self.gets: list[str] = []

    def get(self, job_id: str) -> Job | None:
        self.gets.append(threading.current_thread().name)
        return super().get(job_id)


class WatchedSignals(InProcessJobSignals):
    """Says when somebody starts waiting, and for how long each wait was to last."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()
        self.timeouts: list[float] = []

    async def wait(self, job_id: str, timeout_s: float) -> Signal | None:
        self.timeouts.append(timeout_s)
        self.waiting.set()
        return await super().wait(job_id, timeout_s)


def test_wait_returns_the_job_the_worker_finished_without_reading_the_store() -> None:
    store, signals = CountingJobStore(), WatchedSignals()
    app = fake_app(store=store, signals=signals)
    job = submit(app, {"input": "a b c"})
    body = take(app)

    def deliver() -> None:
        if signals.waiting.wait(10):
            app.worker.process(body)

    worker = threading.Thread(target=deliver, name="worker")
    store.gets.clear()
    worker.start()
    try:
        done = asyncio.run(app.gateway.wait(job, timeout_s=10))
    finally:
        worker.join(10)
    readers = set(store.gets)
    stored = store.get(job.id)
    assert stored is not None and stored.status is JobStatus.SUCCEEDED  # the worker really did finish it
    assert done.status is JobStatus.SUCCEEDED and done.result == stored.result and done.usage == stored.usage
    assert done.result is not None and done.result["usage"]["prompt_tokens"] == 3
    assert readers == {"worker"}  # the worker read its job; the waiting request never did
    assert len(signals.timeouts) == 1 and signals.timeouts[0] > 5  # one wait for the signal, no polling


def test_wait_sees_a_job_that_ended_before_it_started_waiting() -> None:
    store = CountingJobStore()
    app = fake_app(store=store)
    job = submit(app, {"input": "a"})
    run_next(app)
    store.gets.clear()
    done = asyncio.run(app.gateway.wait(job, timeout_s=10))
    assert done.status is JobStatus.SUCCEEDED and store.gets == []


def test_wait_returns_a_cancelled_job_when_it_is_cancelled() -> None:
    signals = WatchedSignals()
    app = fake_app(signals=signals)
    job = submit(app, {"input": "a"})

    def cancel() -> None:
        if signals.waiting.wait(10):
            app.gateway.cancel(ACME, job.id)

    canceller = threading.Thread(target=cancel)
    canceller.start()
    try:
        done = asyncio.run(app.gateway.wait(job, timeout_s=10))
    finally:
        canceller.join(10)
    assert done.status is JobStatus.CANCELLED


def test_wait_that_times_out_returns_the_job_as_it_stands() -> None:
    store = CountingJobStore()
    app = fake_app(store=store)
    job = submit(app, {"input": "a"})
    store.gets.clear()
    assert asyncio.run(app.gateway.wait(job, timeout_s=0.01)) == job
    assert store.gets == []
    assert asyncio.run(app.gateway.wait(job, timeout_s=0)) == job


def test_next_chunks_gives_up_after_the_idle_time_and_returns_once_the_job_ended() -> None:
    app = fake_app()
    job = submit(app, {"prompt": "hi", "max_tokens": 2}, CHAT)
    assert asyncio.run(app.gateway.next_chunks(ACME, job, 0, idle_s=0.01)) is None
    run_next(app)
    got = asyncio.run(app.gateway.next_chunks(ACME, job, 0, idle_s=10))
    assert got is not None and got[0] == [] and got[1].status is JobStatus.SUCCEEDED


def test_a_relay_in_process_reads_chunks_but_never_the_job_store() -> None:
    store = CountingJobStore()
    app = fake_app(store=store)
    job = submit(app, {"prompt": "hi", "max_tokens": 40, "stream": True}, CHAT)
    run_next(app)
    store.gets.clear()
    got = asyncio.run(app.gateway.next_chunks(ACME, job, 0, idle_s=10))
    assert got is not None and got[1].status is JobStatus.SUCCEEDED  # its end came by signal
    assert store.gets == []
