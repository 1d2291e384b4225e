"""The trace survives each real hop: the job message on the SQLite queue and on Azure Storage (Azurite) carries
the request's `traceparent`, a redelivered message continues the same trace, the usage `EventData` carries it as
an application property (as does the SQLite usage log), and the billing trigger continues it from the real
`func.EventHubEvent`s the Functions host hands a cardinality-many trigger."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import azure.functions as func
import pytest
from azure.functions.meta import Datum
from azure.functions.queue import QueueMessage
from opentelemetry.sdk.trace import ReadableSpan

from functions.azure.indexing import trigger
from shared import telemetry
from shared.adapters.azure.usage_stream import AzureUsageStream
from shared.adapters.sqlite.db import SqliteDatabase
from shared.adapters.sqlite.usage_log import SqliteUsageLog
from shared.bootstrap import Inferq, bootstrap, set_app
from shared.domain.auth import Caller
from shared.domain.jobs import JobStatus
from shared.domain.ports import ReceivedMessage
from shared.schemas.messages import JobMessage
from shared.settings import Settings
from tests.azurite import Azurite
from tests.conftest import ledger_event, wait_for
from tests.integration.test_azure_pipeline import raw_queue
from tests.integration.test_usage_stream import RecordingProducer, events_in
from tests.otel import Otel

ACME = Caller("acme")
T0 = datetime(2024, 5, 1, 10, 15, tzinfo=UTC)


def traceparent_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-{span.context.trace_flags:02x}"


def only(otel: Otel, name: str) -> ReadableSpan:
    (span,) = otel.spans(name)
    return span


def deliver(message: ReceivedMessage) -> None:
    """What the Functions queue trigger (and the local host's pump) hands `run_job`."""
    trigger("run_job")(
        QueueMessage(
            id=message.id, body=message.body.encode(), dequeue_count=message.dequeue_count, pop_receipt=message.receipt
        )
    )


def continues(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.context is not None and parent.context is not None
    return (
        child.parent is not None
        and child.context.trace_id == parent.context.trace_id
        and child.parent.span_id == parent.context.span_id
    )


def test_the_sqlite_queue_message_carries_the_traceparent_and_the_worker_continues_it(
    installed: Inferq, otel: Otel
) -> None:
    job = installed.gateway.submit(ACME, installed.config.deployment("all-MiniLM-L6-v2"), {"input": "hello"}).job
    (message,) = installed.queue.receive(1, 60)
    submit = only(otel, "inferq.submit")
    assert json.loads(message.body)["traceparent"] == traceparent_of(submit)

    deliver(message)
    assert installed.store.get(job.id).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]
    worker = only(otel, "inferq.job")
    assert continues(worker, submit) and continues(only(otel, "inferq.queue.wait"), submit)


def test_a_redelivered_message_continues_the_same_trace(installed: Inferq, otel: Otel) -> None:
    job = installed.gateway.submit(ACME, installed.config.deployment("all-MiniLM-L6-v2"), {"input": "again"}).job
    (first,) = installed.queue.receive(1, 0.2)  # its worker dies: the message shows again once invisible no more
    redelivered: list[ReceivedMessage] = []
    wait_for(lambda: redelivered.extend(installed.queue.receive(1, 60)) or redelivered, timeout=10)
    (again,) = redelivered
    assert again.id == first.id and again.dequeue_count == 2

    deliver(again)
    assert installed.store.get(job.id).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]
    worker, submit = only(otel, "inferq.job"), only(otel, "inferq.submit")
    assert continues(worker, submit)
    assert worker.attributes is not None and worker.attributes["inferq.dequeue_count"] == 2


def test_a_message_without_traceparent_still_runs_its_job(installed: Inferq, otel: Otel) -> None:
    body = JobMessage(job_id="job_oldproducer1", tenant="acme", deployment="all-MiniLM-L6-v2", payload={"input": "hi"})
    installed.queue.send(body.model_dump_json())
    (message,) = installed.queue.receive(1, 60)
    deliver(message)
    assert installed.store.get("job_oldproducer1").status is JobStatus.SUCCEEDED  # type: ignore[union-attr]
    worker = only(otel, "inferq.job")
    assert worker.parent is None  # a trace of its own


@pytest.fixture
def azure_service(tmp_path: Path, config_path: Path, azurite: Azurite) -> Iterator[tuple[Inferq, str]]:
    connection = azurite.fresh_connection_string()
    settings = Settings(
        _env_file=None, backend="azure", data_dir=tmp_path / "data", config=config_path, AzureWebJobsStorage=connection
    )
    service = bootstrap(settings)
    set_app(service)
    yield service, connection
    set_app(None)


def test_the_azure_storage_queue_message_carries_the_traceparent(azure_service: tuple[Inferq, str], otel: Otel) -> None:
    service, connection = azure_service
    job = service.gateway.submit(ACME, service.config.deployment("all-MiniLM-L6-v2"), {"input": "hello"}).job
    (wire,) = raw_queue(connection).peek_messages(max_messages=1)
    carried = json.loads(base64.b64decode(wire.content))["traceparent"]  # base64 JSON, as the trigger reads it
    submit = only(otel, "inferq.submit")
    assert carried == traceparent_of(submit)

    (message,) = service.queue.receive(1, 60)
    deliver(message)
    assert service.store.get(job.id).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]
    assert continues(only(otel, "inferq.job"), submit)


def test_the_usage_event_data_carries_the_traceparent_and_billing_continues_it(installed: Inferq, otel: Otel) -> None:
    producer = RecordingProducer()
    stream = AzureUsageStream(lambda: producer)
    events = [ledger_event("job-1", "acme", 7, T0), ledger_event("job-2", "acme", 5, T0)]
    with telemetry.span("inferq.usage.publish", kind=telemetry.PRODUCER):
        stream.publish(events)
    publish = only(otel, "inferq.usage.publish")
    (batch,) = producer.sent
    data = events_in(batch)
    assert [d.properties["traceparent"] for d in data] == [traceparent_of(publish)] * 2

    # The Functions host hands a cardinality-many trigger each event's application properties in PropertiesArray.
    properties = [{"traceparent": d.properties["traceparent"]} for d in data]
    metadata = {"PropertiesArray": Datum(json.dumps(properties), "json")}
    hub = [
        func.EventHubEvent(body=d.body_as_str().encode(), trigger_metadata=metadata, sequence_number=i, offset=str(i))
        for i, d in enumerate(data)
    ]
    trigger("bill_usage")(hub)
    ingest = only(otel, "inferq.billing.ingest")
    assert continues(ingest, publish)
    assert ingest.attributes is not None and ingest.attributes["inferq.billing.billed"] == 2


def test_usage_published_outside_any_trace_carries_no_traceparent(otel: Otel) -> None:
    producer = RecordingProducer()
    AzureUsageStream(lambda: producer).publish([ledger_event("job-1", "acme", 7, T0)])
    (data,) = events_in(producer.sent[0])
    assert not data.properties


def test_the_sqlite_usage_log_keeps_each_event_traceparent_even_in_a_log_written_before(
    tmp_path: Path, otel: Otel
) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:  # the log as an older version created it: no traceparent column
        conn.execute(
            "CREATE TABLE usage_log (partition INTEGER NOT NULL, offset INTEGER NOT NULL, body TEXT NOT NULL,"
            " PRIMARY KEY (partition, offset))"
        )
        conn.execute("INSERT INTO usage_log VALUES (?, 0, ?)", (0, "old body"))
    conn.close()
    log = SqliteUsageLog(SqliteDatabase(path), partitions=1)
    with telemetry.span("inferq.usage.publish"):
        log.publish([ledger_event("job-1", "acme", 7, T0)])
    old, new = log.read("billing", 0, 10)
    assert (old.body, old.traceparent) == ("old body", None)
    assert new.traceparent == traceparent_of(only(otel, "inferq.usage.publish"))
