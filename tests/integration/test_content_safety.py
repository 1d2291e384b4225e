"""Content safety in the handlers, on SQLite and the tiny models: a prompt refused at the edge is never queued and
is recorded as a failed job billing its input tokens; a message a producer puts on the queue directly (no edge)
is screened by the worker; the text-classifier kind runs as a job of its own."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.sqlite.queue import SqliteJobQueue
from shared.adapters.sqlite.usage_log import SqliteUsageLog
from shared.bootstrap import Inferq
from shared.domain.auth import Caller
from shared.domain.content_safety import Category, Severity
from shared.domain.errors import ContentFiltered
from shared.domain.jobs import JobStatus, new_job_id, utcnow
from shared.schemas.chat import ChatCompletionsRequest
from shared.schemas.messages import JobMessage
from shared.schemas.usage import Meter
from tests.e2e.test_content_safety import MODEL, config_text
from tests.integration.test_worker import drain, pump
from tests.otel import Otel

pytestmark = pytest.mark.usefixtures("installed")
ACME = Caller("acme", key_id="acme-key-1")


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "safety.toml"
    path.write_text(config_text(tmp_path))
    return path


def published(service: Inferq) -> list[tuple[str, str, int]]:
    assert isinstance(service.stream, SqliteUsageLog)
    bodies = [e.body for p in range(service.stream.partitions) for e in service.stream.read("test", p, 1000)]
    return [(json.loads(b)["id"], json.loads(b)["meter"], json.loads(b)["tokens"]) for b in bodies]


def test_a_refused_prompt_is_never_queued_and_bills_its_input_tokens_once(service: Inferq, otel: Otel) -> None:
    gateway = service.gateway
    route = gateway.route(MODEL, None)
    request = ChatCompletionsRequest(model=MODEL, messages=[{"role": "user", "content": "you bigot"}])  # type: ignore[list-item]
    with pytest.raises(ContentFiltered) as refused:
        gateway.accept(ACME, route, request, "error", idempotency_key="k1")
    assert refused.value.result.annotation()["hate"] == {"filtered": True, "severity": "medium"}
    queue = service.queue
    assert isinstance(queue, SqliteJobQueue) and queue.count() == 0  # nothing for a worker
    job = service.store.get(new_job_id("acme", "k1"))  # the key names the job
    assert job is not None and job.status is JobStatus.FAILED and job.attempts == 0 and job.started_at is None
    assert job.error is not None and job.error.code == "content_filter" and "hate (medium)" in job.error.message
    (event,) = job.usage
    assert event.meter is Meter.INPUT_TOKENS and event.tokens > 0 and job.usage_published
    assert job.key_id == event.key_id == "acme-key-1"  # the usage record names the key that sent the prompt
    assert published(service) == [(f"{job.id}:input_tokens", "input_tokens", event.tokens)]
    # Counted among the deployment's outcomes (/deployments, the dashboard) like a job a worker ended.
    (outcome,) = service.stats.outcomes(job.created_at - timedelta(minutes=1), utcnow() + timedelta(minutes=1))
    assert (outcome.job_id, outcome.deployment, outcome.status, outcome.error) == (
        job.id,
        MODEL,
        "failed",
        "content_filter",
    )
    assert outcome.usage == {"input_tokens": event.tokens}
    # and in the metrics: one failed request, its input tokens
    assert otel.total("inferq.requests", **{"inferq.deployment": MODEL, "inferq.outcome": "failed"}) == 1
    assert otel.total("inferq.tokens", **{"inferq.deployment": MODEL, "inferq.meter": "input_tokens"}) == event.tokens
    # A repeat with the same Idempotency-Key finds the refused job: nothing queued, nothing billed again.
    again = gateway.accept(ACME, route, request, "error", idempotency_key="k1")
    assert again.job.id == job.id and not again.created and queue.count() == 0
    assert len(published(service)) == 1


def test_a_prompt_queued_directly_is_screened_by_the_worker(service: Inferq) -> None:
    payload: dict[str, Any] = {"messages": [{"role": "user", "content": "a bad word"}], "max_tokens": 5}
    message = JobMessage(job_id="job_direct", tenant="acme", deployment=MODEL, payload=payload)
    service.queue.send(message.model_dump_json(exclude_none=True))
    drain(pump(service))
    job = service.store.get("job_direct")
    assert job is not None and job.status is JobStatus.FAILED
    assert job.error is not None and job.error.code == "content_filter" and "banned-words" in job.error.message
    assert {e.meter: e.tokens for e in job.usage}[Meter.OUTPUT_TOKENS] == 0  # the prompt was read, nothing generated


def test_the_text_classifier_kind_rates_texts_as_a_job(service: Inferq) -> None:
    classifier = service.config.deployment("safety-classifier")
    job = service.gateway.submit(ACME, classifier, {"input": ["a massacre", "hello there", "flirt and stab"]}).job
    drain(pump(service))
    done = service.store.get(job.id)
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.result is not None
    assert [r["categories"] for r in done.result["data"]] == [
        {"violence": "high"},
        {},
        {"sexual": "low", "violence": "medium"},
    ]
    assert done.result["usage"]["prompt_tokens"] == 2 + 2 + 3  # words, as its tokenizer splits them


def test_a_text_longer_than_the_classifiers_window_is_rated_whole(service: Inferq) -> None:
    classifier = service.config.deployment("safety-classifier")
    runtime = service.registry.runtime(classifier)
    long_text = "calm words " * 400 + "then a massacre"  # the trigger is token 803, past the 512-token window
    assert runtime.classify([long_text, "calm words " * 400]) == [{Category.VIOLENCE: Severity.HIGH}, {}]  # type: ignore[attr-defined]
