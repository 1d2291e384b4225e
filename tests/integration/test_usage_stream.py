"""The Event Hubs producer as far as it goes without a namespace: real `EventDataBatch`es (split when full,
keyed by tenant), the body the billing trigger parses, an unreachable namespace, and the publish retried later."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from azure.eventhub import EventData, EventDataBatch

from functions.azure.indexing import trigger
from shared.adapters.azure.usage_stream import AzureUsageStream, build_batches, producer_from_settings, serialise
from shared.adapters.sqlite.usage_log import SqliteUsageLog
from shared.bootstrap import Inferq
from shared.domain.auth import Caller
from shared.domain.errors import StorageUnavailable
from shared.domain.jobs import JobStatus
from shared.schemas.usage import UsageEvent
from shared.settings import Settings
from tests.conftest import ledger_event

T0 = datetime(2024, 5, 1, 10, 15, tzinfo=UTC)


def event(job: str, tenant: str = "acme", tokens: int = 12) -> UsageEvent:
    return ledger_event(job, tenant, tokens, T0, model="all-MiniLM-L6-v2")


def events_in(batch: EventDataBatch) -> list[EventData]:
    return list(batch._internal_events)  # the SDK keeps the added events for its tracing; read them back here


def hub_events(batches: list[EventDataBatch]) -> list[func.EventHubEvent]:
    """What the Functions host hands the trigger: each event's body bytes."""
    return [
        func.EventHubEvent(body=data.body_as_str().encode("utf-8"), partition_key=batch._partition_key)
        for batch in batches
        for data in events_in(batch)
    ]


class RecordingProducer:
    """An `EventHubProducerClient` stand-in that builds real batches and keeps what it is asked to send."""

    def __init__(self, max_size_in_bytes: int = 1024 * 1024) -> None:
        self.max_size_in_bytes = max_size_in_bytes
        self.sent: list[EventDataBatch] = []
        self.closed = False

    def create_batch(self, *, partition_key: str | None = None) -> EventDataBatch:
        return EventDataBatch(max_size_in_bytes=self.max_size_in_bytes, partition_key=partition_key)

    def send_batch(self, event_data_batch: EventDataBatch, *, timeout: float | None = None) -> None:
        self.sent.append(event_data_batch)

    def close(self) -> None:
        self.closed = True


def unreachable_connection() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we return: nothing listens there
    return (
        f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;"
        "EntityPath=inferq-usage;UseDevelopmentEmulator=true"
    )


def test_events_are_grouped_by_tenant_into_batches_keyed_by_it_and_split_when_full() -> None:
    events = [event(f"job_a{i}") for i in range(25)] + [event(f"job_g{i}", "globex") for i in range(3)]
    events.insert(5, event("job_g_early", "globex"))
    batches = build_batches(events, lambda key: EventDataBatch(max_size_in_bytes=2048, partition_key=key))
    assert len(batches) > 2  # acme's 25 events don't fit one 2 KB batch
    assert all(b.size_in_bytes <= 2048 and len(b) > 0 for b in batches)
    keys = [b._partition_key for b in batches]
    assert keys == sorted(keys) and set(keys) == {"acme", "globex"}  # acme first: it was seen first
    for b in batches:
        assert {UsageEvent.model_validate_json(d.body_as_str()).tenant for d in events_in(b)} == {b._partition_key}
    sent_ids = [UsageEvent.model_validate_json(d.body_as_str()).id for b in batches for d in events_in(b)]
    expected = [e.id for e in events if e.tenant == "acme"] + [e.id for e in events if e.tenant == "globex"]
    assert sent_ids == expected  # every event once, in order within its tenant


def test_the_billing_trigger_parses_exactly_what_the_producer_serialises(installed: Inferq) -> None:
    events = [event("job_1", tokens=7), event("job_2", "globex", tokens=5), event("job_3", tokens=11)]
    assert serialise(events[0]).content_type == "application/json"
    batches = build_batches(events, lambda key: EventDataBatch(partition_key=key))
    trigger("bill_usage")(hub_events(batches))
    totals = {(t.tenant, t.tokens) for t in installed.ledger.hourly_totals(None, T0, T0 + timedelta(hours=1))}
    assert totals == {("acme", 18), ("globex", 5)}
    trigger("bill_usage")(hub_events(batches))  # redelivered: billed once
    assert {(t.tenant, t.tokens) for t in installed.ledger.hourly_totals(None, T0, T0 + timedelta(hours=1))} == totals


def test_one_producer_is_built_lazily_and_reused_across_publishes() -> None:
    built: list[RecordingProducer] = []

    def connect() -> RecordingProducer:
        built.append(RecordingProducer())
        return built[-1]

    stream = AzureUsageStream(connect)
    assert built == []  # nothing connects before the first publish
    stream.publish([event("job_1")])
    stream.publish([event("job_2"), event("job_3", "globex")])
    assert len(built) == 1 and [b._partition_key for b in built[0].sent] == ["acme", "acme", "globex"]
    stream.close()
    assert built[0].closed


def test_the_producer_is_built_from_settings_without_connecting() -> None:
    settings = Settings(_env_file=None, EventHubConnection=unreachable_connection())
    producer = producer_from_settings(settings)
    try:
        assert producer._config.retry_total == settings.eventhub_retry_total  # type: ignore[attr-defined]
        assert producer.eventhub_name == "inferq-usage"  # type: ignore[attr-defined]
    finally:
        producer.close()


def test_an_unreachable_namespace_keeps_the_usage_on_the_job_until_a_later_publish(
    installed: Inferq,
) -> None:
    settings = Settings(_env_file=None, eventhub_retry_total=0, EventHubConnection=unreachable_connection())
    unreachable = AzureUsageStream.from_settings(settings)
    assert unreachable is not None
    with pytest.raises(StorageUnavailable):
        unreachable.publish([event("job_x")])

    service = installed
    log = service.stream
    assert isinstance(log, SqliteUsageLog)
    service.worker.stream = unreachable  # the port the worker publishes to
    job_id = service.gateway.submit(
        Caller("acme"), service.config.default_deployment, {"input": "keep my usage"}
    ).job.id
    (message,) = service.queue.receive(1, 30)
    trigger("run_job")(func.QueueMessage(id=message.id, body=message.body.encode()))
    job = service.store.get(job_id)
    assert job is not None and job.status is JobStatus.SUCCEEDED
    assert not job.usage_published and len(job.usage) == 1  # kept with the job (Invariant 7)
    assert service.worker.publish_pending_usage() == 0  # still unreachable: kept again

    working = RecordingProducer()
    service.worker.stream = AzureUsageStream(lambda: working)
    assert service.worker.publish_pending_usage() == 1
    assert service.store.unpublished_usage(10) == []
    (batch,) = working.sent
    assert batch._partition_key == "acme"
    assert [UsageEvent.model_validate_json(d.body_as_str()) for d in events_in(batch)] == list(job.usage)
    trigger("bill_usage")(hub_events(working.sent))
    (total,) = service.ledger.hourly_totals("acme", job.usage[0].time, job.usage[0].time + timedelta(hours=1))
    assert total.tokens == job.usage[0].tokens
