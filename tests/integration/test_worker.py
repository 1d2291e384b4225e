"""The queue worker through the function objects Azure indexes, on SQLite and the real model."""

from types import SimpleNamespace
from typing import Any

import pytest

from functions.azure.indexing import trigger
from functions.local.runtime import QueuePump, UsageConsumer
from shared.adapters.sqlite.queue import SqliteJobQueue
from shared.adapters.sqlite.usage_log import SqliteUsageLog
from shared.bootstrap import Inferq
from shared.domain.auth import Caller
from shared.domain.errors import StorageUnavailable
from shared.domain.jobs import JobStatus
from shared.schemas.messages import JobMessage
from tests.conftest import wait_for

ACME = Caller("acme")


pytestmark = pytest.mark.usefixtures("installed")  # the function objects call this test's service


def pump(service: Inferq, visibility_timeout_s: float = 30) -> QueuePump:
    return QueuePump(
        service.queue,
        trigger("run_job"),
        poison=service.poison,
        max_dequeue_count=service.settings.max_dequeue_count,
        visibility_timeout_s=visibility_timeout_s,
        concurrency=2,
    )


def drain(p: QueuePump) -> None:
    """Deliver until the queue is empty (failed deliveries are released at once, as host.json says)."""
    queue = p.queue
    assert isinstance(queue, SqliteJobQueue)
    for _ in range(50):
        if queue.count() == 0:
            return
        for message in queue.receive(10, p.visibility_timeout_s):
            p.deliver(message)
    raise AssertionError("queue did not drain")


def submit(service: Inferq, payload: dict[str, Any]) -> str:
    return service.gateway.submit(ACME, service.config.default_deployment, payload).job.id


def usage_bodies(service: Inferq) -> list[str]:
    assert isinstance(service.stream, SqliteUsageLog)
    return [e.body for p in range(service.stream.partitions) for e in service.stream.read("audit", p, 1000)]


def test_a_job_runs_once_and_publishes_one_usage_event(service: Inferq) -> None:
    job_id = submit(service, {"input": ["hello there", "general kenobi"]})
    drain(pump(service))
    job = service.gateway.get_job(ACME, job_id)
    assert job.status is JobStatus.SUCCEEDED and job.usage_published
    assert job.result is not None and len(job.result["data"]) == 2
    (event,) = job.usage
    assert (event.id, event.meter, event.tokens) == (
        f"{job_id}:input_tokens",
        "input_tokens",
        job.result["usage"]["prompt_tokens"],
    )
    assert [e.count(job_id) for e in usage_bodies(service)] == [2]  # id and job_id fields of one event


def test_the_same_message_delivered_twice_leaves_one_result_and_one_set_of_usage(service: Inferq) -> None:
    job_id = submit(service, {"input": "duplicate delivery"})
    queue = service.queue
    assert isinstance(queue, SqliteJobQueue)
    (message,) = queue.receive(1, 30)
    trigger("run_job")  # warm
    p = pump(service)
    p.deliver(message)
    first = service.gateway.get_job(ACME, job_id)
    queue.send(message.body)  # at-least-once: the same body again
    drain(p)
    second = service.gateway.get_job(ACME, job_id)
    assert second.result == first.result and second.finished_at == first.finished_at
    assert len(usage_bodies(service)) == 1


def test_a_message_failing_five_times_is_poisoned_and_its_job_failed_with_the_reason(
    service: Inferq, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def broken(texts: Any, owner: str = "") -> Any:
        calls.append(texts)
        raise RuntimeError("runner crashed: out of memory")

    monkeypatch.setattr(service.registry, "runtime", lambda deployment: SimpleNamespace(predict=broken))
    job_id = submit(service, {"input": "doomed"})
    drain(pump(service))
    assert len(calls) == 5
    poisoned = service.poison
    assert isinstance(poisoned, SqliteJobQueue) and poisoned.count() == 1
    assert service.gateway.get_job(ACME, job_id).status is JobStatus.RUNNING  # until the poison trigger runs
    poison_pump = QueuePump(
        poisoned, trigger("fail_poisoned_job"), poison=None, max_dequeue_count=5, visibility_timeout_s=30, concurrency=1
    )
    drain(poison_pump)
    job = service.gateway.get_job(ACME, job_id)
    assert job.status is JobStatus.FAILED and job.error is not None
    assert job.error.code == "PoisonMessage"
    assert "runner crashed: out of memory" in job.error.message
    assert usage_bodies(service) == []


def test_a_bad_payload_fails_its_job_once_without_retries(service: Inferq) -> None:
    job_id = submit(service, {"input": "fine"})
    queue = service.queue
    assert isinstance(queue, SqliteJobQueue)
    (message,) = queue.receive(1, 30)
    queue.delete(message)
    bad = JobMessage(job_id=job_id, tenant="acme", deployment="all-MiniLM-L6-v2", payload={"input": 42})
    queue.send(bad.model_dump_json())
    (delivery,) = queue.receive(1, 30)
    pump(service).deliver(delivery)
    job = service.gateway.get_job(ACME, job_id)
    assert job.status is JobStatus.FAILED and job.error is not None and job.error.code == "InvalidInput"
    assert queue.count() == 0  # acknowledged: no retry, no poison
    assert service.poison.receive(1, 1) == []


def test_garbage_on_the_queue_is_dropped_not_retried(service: Inferq) -> None:
    queue = service.queue
    queue.send("this is not json")
    queue.send('{"v": 2, "job_id": "x"}')
    drain(pump(service))
    assert service.poison.receive(5, 1) == []


def test_a_producer_can_enqueue_a_job_directly(service: Inferq) -> None:
    message = JobMessage(
        job_id="batch-0001", tenant="acme", deployment="ALL-MiniLM-L6-v2", payload={"input": ["from a batch pipeline"]}
    )
    service.queue.send(message.model_dump_json())
    drain(pump(service))
    assert service.gateway.get_job(ACME, "batch-0001").status is JobStatus.SUCCEEDED


def test_a_worker_killed_mid_job_loses_nothing(service: Inferq) -> None:
    job_id = submit(service, {"input": "survive a crash"})
    queue = service.queue
    assert isinstance(queue, SqliteJobQueue)
    # The first worker takes the message for 0.2 s and dies without deleting it.
    (taken,) = queue.receive(1, 0.2)
    assert queue.receive(1, 30) == []  # invisible while held
    wait_for(
        lambda: (
            queue.count() == 1
            and bool(redelivered := queue.receive(1, 30))
            and pump(service).deliver(redelivered[0]) is None
        )
    )
    job = service.gateway.get_job(ACME, job_id)
    assert job.status is JobStatus.SUCCEEDED and taken.dequeue_count == 1
    assert queue.count() == 0
    assert len(usage_bodies(service)) == 1


def test_large_payloads_travel_by_claim_check(service: Inferq) -> None:
    texts = [f"sentence number {i} " * 40 for i in range(120)]  # ~ 100 KB
    job_id = submit(service, {"input": texts})
    queue = service.queue
    assert isinstance(queue, SqliteJobQueue)
    (message,) = queue.receive(1, 30)
    parsed = JobMessage.model_validate_json(message.body)
    assert parsed.payload is None and parsed.payload_ref == f"payloads/{job_id}.json"
    assert len(message.body) < 1024
    pump(service).deliver(message)
    job = service.gateway.get_job(ACME, job_id)
    assert job.status is JobStatus.SUCCEEDED and job.result is not None and len(job.result["data"]) == 120
    with pytest.raises(Exception, match="not found"):
        service.blobs.get(parsed.payload_ref)  # cleaned up once the job is terminal


def test_usage_that_cannot_be_published_is_kept_and_published_later(
    service: Inferq, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_publish = service.stream.publish

    def down(events: Any) -> None:
        raise StorageUnavailable("event hub unreachable")

    monkeypatch.setattr(service.stream, "publish", down)
    job_id = submit(service, {"input": "billing must not lose this"})
    drain(pump(service))
    job = service.gateway.get_job(ACME, job_id)
    assert job.status is JobStatus.SUCCEEDED and not job.usage_published and len(job.usage) == 1
    assert service.worker.publish_pending_usage() == 0  # still down: kept
    monkeypatch.setattr(service.stream, "publish", real_publish)
    trigger("publish_pending_usage")(None)
    assert service.gateway.get_job(ACME, job_id).usage_published
    assert len(usage_bodies(service)) == 1
    trigger("publish_pending_usage")(None)
    assert len(usage_bodies(service)) == 1  # nothing published twice


def test_the_usage_consumer_feeds_the_billing_function(service: Inferq) -> None:
    submit(service, {"input": "count me"})
    drain(pump(service))
    assert isinstance(service.stream, SqliteUsageLog)
    consumer = UsageConsumer(service.stream, trigger("bill_usage"))
    assert consumer.consume_once() == 1
    assert consumer.consume_once() == 0  # checkpointed


def test_a_message_naming_another_tenants_job_is_dropped(service: Inferq) -> None:
    job_id = submit(service, {"input": "acme's own job"})
    queue = service.queue
    assert isinstance(queue, SqliteJobQueue)
    (original,) = queue.receive(1, 30)
    queue.delete(original)
    forged = JobMessage(job_id=job_id, tenant="globex", deployment="all-MiniLM-L6-v2", payload={"input": "x"})
    queue.send(forged.model_dump_json())
    drain(pump(service))
    job = service.gateway.get_job(ACME, job_id)
    assert job.status is JobStatus.QUEUED and job.attempts == 0  # untouched: not run, not billed to anyone
    assert usage_bodies(service) == []
