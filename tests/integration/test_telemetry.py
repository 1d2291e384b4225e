"""One trace per request, through the local host in process (uvicorn serving the app, the queue pump, the usage
consumer) on SQLite with the real models: HTTP → submit → enqueue → queue wait → worker → model run → usage
publish → billing ingest, recorded by the SDK's in-memory exporter; and the metrics read back from an in-memory
reader match what happened."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from azure.functions.queue import QueueMessage
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from functions.azure.indexing import trigger
from functions.http.app import create_app
from shared.bootstrap import Inferq, set_app
from shared.domain.auth import Caller
from shared.telemetry import setup
from tests.conftest import KEYS, serving, wait_for
from tests.integration.test_billing_trigger import hub_events
from tests.otel import Otel

PIPELINE = {
    "inferq.submit",
    "inferq.enqueue",
    "inferq.queue.wait",
    "inferq.job",
    "inferq.model.run",
    "inferq.usage.publish",
    "inferq.result.write",
    "inferq.billing.ingest",
}
SECRET_TEXT = "the quick brown fox is a private sentence"


@dataclass
class Host:
    url: str
    service: Inferq
    otel: Otel

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"api-key": KEYS["acme"]}, timeout=60)

    def trace_of(self, method: str, path: str) -> tuple[ReadableSpan, list[ReadableSpan]]:
        """The HTTP server span of the request, and every span of its trace once its usage is billed."""
        (server,) = [
            s
            for s in self.otel.spans()
            if s.kind is SpanKind.SERVER and s.name == f"{method} {path}" and s.parent is None
        ]
        assert server.context is not None
        trace_id = server.context.trace_id
        wait_for(lambda: any(s.name == "inferq.billing.ingest" for s in self.otel.trace(trace_id)), timeout=30)
        return server, self.otel.trace(trace_id)


@pytest.fixture
def host(service: Inferq, otel: Otel) -> Iterator[Host]:
    app = create_app()
    setup.instrument(app)
    set_app(service)
    try:
        with serving(app, service) as url:
            yield Host(url, service, otel)
    finally:
        set_app(None)


def by_name(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


def no_secrets_in(spans: list[ReadableSpan], *secrets: str) -> None:
    for s in spans:
        for value in (s.attributes or {}).values():
            assert not any(secret in str(value) for secret in secrets), (s.name, value)


def test_a_sync_embeddings_request_is_one_trace_from_http_to_billing(host: Host) -> None:
    with host.client() as client:
        response = client.post("/embeddings", json={"model": "all-MiniLM-L6-v2", "input": SECRET_TEXT})
    assert response.status_code == 200
    tokens = response.json()["usage"]["prompt_tokens"]
    job_id = response.headers["x-inferq-job-id"]

    server, spans = host.trace_of("POST", "/embeddings")
    names = {s.name for s in spans}
    assert PIPELINE | {"inferq.batch"} <= names
    one = by_name(spans)
    job = one["inferq.job"]
    assert job.kind is SpanKind.CONSUMER and job.attributes is not None
    assert job.attributes["inferq.job_id"] == job_id
    assert job.attributes["inferq.tenant"] == "acme"
    assert job.attributes["inferq.endpoint"] == job.attributes["inferq.deployment"] == "all-MiniLM-L6-v2"
    assert job.attributes["inferq.dequeue_count"] == 1
    assert job.attributes["inferq.outcome"] == "succeeded"
    assert job.attributes["gen_ai.operation.name"] == "embeddings"
    assert job.attributes["gen_ai.request.model"] == "all-MiniLM-L6-v2"
    assert job.attributes["gen_ai.usage.input_tokens"] == tokens
    # The tree: the worker continues the submit span the message carried; billing continues the usage publish.
    submit, publish, ingest = one["inferq.submit"], one["inferq.usage.publish"], one["inferq.billing.ingest"]
    assert submit.parent is not None and server.context is not None
    assert submit.parent.span_id == server.context.span_id
    assert job.parent is not None and submit.context is not None and job.parent.span_id == submit.context.span_id
    assert ingest.parent is not None and publish.context is not None
    assert ingest.parent.span_id == publish.context.span_id and ingest.kind is SpanKind.CONSUMER
    assert ingest.attributes is not None and ingest.attributes["inferq.billing.billed"] == 1
    wait = one["inferq.queue.wait"]
    assert wait.start_time is not None and wait.end_time is not None and job.start_time is not None
    assert wait.start_time <= wait.end_time <= job.end_time  # type: ignore[operator]
    batch = one["inferq.batch"]
    assert batch.attributes is not None and batch.attributes["inferq.batch.size"] == 1
    run = one["inferq.model.run"]
    assert batch.parent is not None and run.context is not None and batch.parent.span_id == run.context.span_id
    assert [link.context.span_id for link in batch.links] == [run.context.span_id]
    no_secrets_in(spans, SECRET_TEXT, KEYS["acme"])


def test_a_chat_request_is_one_trace_from_http_to_billing(host: Host) -> None:
    body = {"model": "tiny-random-chat", "messages": [{"role": "user", "content": SECRET_TEXT}], "max_tokens": 8}
    with host.client() as client:
        response = client.post("/chat/completions", json=body)
    assert response.status_code == 200
    usage = response.json()["usage"]

    _, spans = host.trace_of("POST", "/chat/completions")
    assert {s.name for s in spans} >= PIPELINE
    job = by_name(spans)["inferq.job"]
    assert job.attributes is not None
    assert job.attributes["gen_ai.operation.name"] == "chat"
    assert job.attributes["gen_ai.request.model"] == "tiny-random-chat"
    assert job.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert job.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    ingests = [s for s in spans if s.name == "inferq.billing.ingest"]
    assert sum(s.attributes["inferq.billing.billed"] for s in ingests if s.attributes) == 2  # input and output
    no_secrets_in(spans, SECRET_TEXT, KEYS["acme"])


def test_an_async_job_submitted_then_polled_is_one_trace_and_each_poll_names_the_job(host: Host) -> None:
    with host.client() as client:
        accepted = client.post(
            "/embeddings", json={"model": "all-MiniLM-L6-v2", "input": "poll me"}, headers={"Prefer": "respond-async"}
        )
        assert accepted.status_code == 202
        job_id = accepted.json()["id"]

        def succeeded() -> bool:
            return client.get(f"/jobs/{job_id}").json()["status"] == "succeeded"

        wait_for(succeeded, timeout=30)

    server, spans = host.trace_of("POST", "/embeddings")
    assert PIPELINE <= {s.name for s in spans}
    assert by_name(spans)["inferq.job"].attributes["inferq.job_id"] == job_id  # type: ignore[index]
    polls = [s for s in host.otel.spans() if s.name == "GET /jobs/{job_id}"]
    assert polls and all(p.attributes and p.attributes["inferq.job_id"] == job_id for p in polls)
    assert all(p.context is not None and server.context is not None for p in polls)
    assert all(p.context.trace_id != server.context.trace_id for p in polls)  # type: ignore[union-attr]


def test_the_job_log_lines_carry_the_request_trace_id(host: Host) -> None:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep()
    handler.setFormatter(logging.Formatter(setup.LOG_FORMAT))
    handler.addFilter(setup.TraceIds())
    jobs_log = logging.getLogger("inferq.jobs")
    jobs_log.addHandler(handler)
    level = jobs_log.level
    jobs_log.setLevel(logging.INFO)
    try:
        with host.client() as client:
            response = client.post("/embeddings", json={"model": "all-MiniLM-L6-v2", "input": "hello"})
        assert response.status_code == 200
        server, _ = host.trace_of("POST", "/embeddings")
    finally:
        jobs_log.removeHandler(handler)
        jobs_log.setLevel(level)
    assert server.context is not None
    trace_id = f"{server.context.trace_id:032x}"
    job_lines = [line for line in lines if f" job={response.headers['x-inferq-job-id']} " in line]
    for event in ("accepted", "started", "succeeded", "billed"):
        assert any(f"job.{event} " in line for line in job_lines), (event, lines)
    assert all(line.endswith(f" trace_id={trace_id}") for line in job_lines), (trace_id, job_lines)


def test_ten_requests_read_back_as_ten_requests_and_the_tokens_they_returned(host: Host) -> None:
    inputs = [f"request number {i} says {'hello ' * (i + 1)}" for i in range(10)]
    with host.client() as client:
        responses = [client.post("/embeddings", json={"model": "all-MiniLM-L6-v2", "input": text}) for text in inputs]
    assert [r.status_code for r in responses] == [200] * 10
    returned = sum(r.json()["usage"]["prompt_tokens"] for r in responses)
    otel, deployment = host.otel, {"inferq.deployment": "all-MiniLM-L6-v2"}
    wait_for(lambda: otel.total("inferq.ledger.ingest_lag", **deployment) == 10, timeout=30)

    assert otel.total("inferq.requests", **deployment, **{"inferq.outcome": "succeeded"}) == 10
    assert otel.total("inferq.requests") == 10
    assert otel.total("inferq.tokens", **deployment, **{"inferq.meter": "input_tokens"}) == returned
    assert otel.total("inferq.queue.wait", **deployment) == 10
    assert otel.total("inferq.job.duration", **deployment) == 10
    (sizes,) = otel.points("inferq.batch.size")
    assert sizes.sum == 10 and sizes.attributes == deployment  # every input ran in some batch, once
    assert otel.total("inferq.jobs.poisoned") == 0 and otel.total("inferq.usage.dead_lettered") == 0


def test_poisoned_jobs_and_dead_lettered_usage_are_counted(installed: Inferq, otel: Otel) -> None:
    job = installed.gateway.submit(Caller("acme"), installed.config.deployment("all-MiniLM-L6-v2"), {"input": "x"}).job
    (message,) = installed.queue.receive(1, 60)
    poisoned = QueueMessage(id=message.id, body=message.body.encode(), dequeue_count=5, pop_receipt=message.receipt)
    trigger("fail_poisoned_job")(poisoned)
    assert installed.store.get(job.id).status.value == "failed"  # type: ignore[union-attr]
    trigger("bill_usage")(hub_events([b"not an event"]))
    assert otel.total("inferq.jobs.poisoned", **{"inferq.deployment": "all-MiniLM-L6-v2"}) == 1
    assert otel.total("inferq.usage.dead_lettered") == 1
