"""Generation jobs through the queue trigger Azure indexes, on SQLite and the tiny model: billing of both
meters, streams, and a stream its client cancels mid-way (billed exactly the tokens generated, once)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from functions.azure.indexing import trigger
from shared.adapters.sqlite.queue import SqliteJobQueue
from shared.adapters.sqlite.usage_log import SqliteUsageLog
from shared.bootstrap import Inferq
from shared.domain.auth import Caller
from shared.domain.config import Deployment
from shared.domain.errors import Conflict
from shared.domain.jobs import JobStatus, utcnow
from shared.runtimes.engines.genai import Generation, GenerationOptions, GenerationRunner
from shared.runtimes.streams import chunk_key, read_chunks
from shared.schemas.usage import Meter
from tests.integration.test_worker import drain, pump

ACME = Caller("acme")
STORY = [{"role": "user", "content": "Tell me a story"}]  # greedy: 300+ tokens before an EOS


pytestmark = pytest.mark.usefixtures("installed")  # the function objects call this test's service


def chat_deployment(service: Inferq) -> Deployment:
    return service.config.deployment("tiny-random-chat")


def submit(service: Inferq, payload: dict[str, Any]) -> str:
    return service.gateway.submit(ACME, chat_deployment(service), payload).job.id


def billed(service: Inferq) -> dict[tuple[str, str], int]:
    """Publish → the billing function → the ledger; totals per (deployment, meter)."""
    assert isinstance(service.stream, SqliteUsageLog)
    bodies = [e.body for p in range(service.stream.partitions) for e in service.stream.read("test", p, 1000)]
    service.billing.ingest_usage(bodies)
    now = utcnow()
    totals = service.ledger.hourly_totals("acme", now - timedelta(hours=2), now + timedelta(hours=1))
    return {(t.deployment, t.meter): t.tokens for t in totals}


def test_a_chat_job_bills_input_and_output_tokens_as_two_meters_once(service: Inferq) -> None:
    job_id = submit(service, {"messages": STORY, "max_tokens": 20, "temperature": 0})
    queue = service.queue
    assert isinstance(queue, SqliteJobQueue)
    (message,) = queue.receive(1, 30)
    p = pump(service)
    p.deliver(message)
    queue.send(message.body)  # delivered again: changes nothing
    drain(p)
    job = service.gateway.get_job(ACME, job_id)
    assert job.status is JobStatus.SUCCEEDED and job.result is not None and job.usage_published
    usage = job.result["usage"]
    assert usage["completion_tokens"] == 20 and job.result["choices"][0]["finish_reason"] == "length"
    assert {(e.id, e.meter, e.tokens) for e in job.usage} == {
        (f"{job_id}:input_tokens", Meter.INPUT_TOKENS, usage["prompt_tokens"]),
        (f"{job_id}:output_tokens", Meter.OUTPUT_TOKENS, 20),
    }
    assert billed(service) == {
        ("tiny-random-chat", "input_tokens"): usage["prompt_tokens"],
        ("tiny-random-chat", "output_tokens"): 20,
    }


def test_a_prompt_too_long_for_the_model_fails_in_the_worker_too(service: Inferq) -> None:
    # Queued directly (a producer on the queue skips the HTTP edge): the worker's own tokenizer decides.
    job_id = submit(service, {"messages": [{"role": "user", "content": "word " * 600}]})
    drain(pump(service))
    job = service.gateway.get_job(ACME, job_id)
    assert job.status is JobStatus.FAILED and job.error is not None and job.error.code == "InvalidInput"
    assert "context is 512 tokens" in job.error.message and not job.usage


def test_a_stream_job_leaves_chunks_that_add_up_to_its_result(service: Inferq) -> None:
    job_id = submit(service, {"prompt": "Once upon a time", "max_tokens": 100, "stream": True, "temperature": 0})
    drain(pump(service))
    job = service.gateway.get_job(ACME, job_id)
    assert job.result is not None
    chunks = read_chunks(service.blobs, job_id, 0)
    assert len(chunks) >= 2  # the first token at once, then the rest
    assert "".join(c.text for c in chunks) == job.result["choices"][0]["text"]
    service.gateway.end_stream(ACME, job_id, len(chunks), complete=True)
    assert (
        read_chunks(service.blobs, job_id, 0) == []
        and service.gateway.get_job(ACME, job_id).status is JobStatus.SUCCEEDED
    )


def test_a_client_leaving_a_stream_whose_job_already_ended_leaves_no_chunks_behind(service: Inferq) -> None:
    # A fast model finishes before its client has read everything; the client then leaves after one chunk.
    job_id = submit(service, {"prompt": "Once upon a time", "max_tokens": 100, "stream": True, "temperature": 0})
    drain(pump(service))
    assert len(read_chunks(service.blobs, job_id, 0)) > 1
    service.gateway.end_stream(ACME, job_id, 1, complete=False)  # what the route does when the client leaves
    assert service.gateway.get_job(ACME, job_id).status is JobStatus.SUCCEEDED
    assert not service.blobs.list_keys(f"streams/{job_id}/", 10)  # nobody will relay the rest


class Gated:
    """The real runner, with each generation pausing after `pause_after` tokens until the gate opens."""

    def __init__(self, runner: GenerationRunner, pause_after: int) -> None:
        self.runner, self.pause_after = runner, pause_after
        self.paused, self.gate = threading.Event(), threading.Event()
        self.generated: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runner, name)

    @property
    def context_length(self) -> int:
        return self.runner.context_length

    def generate(self, input_ids: Any, options: GenerationOptions) -> Any:
        gated = self

        class Paused:
            def __init__(self, inner: Generation) -> None:
                self.inner = inner

            def __getattr__(self, name: str) -> Any:
                return getattr(self.inner, name)

            def __iter__(self) -> Iterator[str]:
                for i, piece in enumerate(self.inner):
                    if i == gated.pause_after:
                        gated.paused.set()
                        assert gated.gate.wait(30)
                    yield piece

            def close(self) -> None:
                gated.generated.append(self.inner.completion_tokens)
                self.inner.close()

        return Paused(self.runner.generate(input_ids, options))


@pytest.fixture
def gated(service: Inferq, monkeypatch: pytest.MonkeyPatch) -> Gated:
    gate = Gated(service.registry.runtime(chat_deployment(service)), pause_after=20)
    monkeypatch.setattr(service.registry, "runtime", lambda deployment: gate)
    return gate


def run_in_background(service: Inferq) -> threading.Thread:
    worker = threading.Thread(target=drain, args=(pump(service),), daemon=True)
    worker.start()
    return worker


def test_a_stream_cancelled_by_its_client_stops_and_bills_exactly_the_tokens_generated_once(
    service: Inferq, gated: Gated
) -> None:
    job_id = submit(service, {"messages": STORY, "max_tokens": 200, "stream": True, "temperature": 0})
    worker = run_in_background(service)
    assert gated.paused.wait(30)
    relayed = read_chunks(service.blobs, job_id, 0)
    assert len(relayed) == 1  # the first 16 tokens reached the client
    service.gateway.end_stream(ACME, job_id, len(relayed), complete=False)  # what the route does when the client leaves
    assert service.gateway.get_job(ACME, job_id).status is JobStatus.CANCELLED
    gated.gate.set()
    worker.join(30)
    (generated,) = gated.generated
    assert 20 < generated < 200  # it stopped within a few tokens of the cancel
    job = service.gateway.get_job(ACME, job_id)
    assert job.status is JobStatus.CANCELLED and job.result is None  # the terminal state stayed
    assert {(e.meter, e.tokens) for e in job.usage} >= {(Meter.OUTPUT_TOKENS, generated)}
    assert job.usage_published
    assert not service.blobs.list_keys(f"streams/{job_id}/", 10)  # its chunks are gone
    prompt_tokens = next(e.tokens for e in job.usage if e.meter is Meter.INPUT_TOKENS)
    expected = {("tiny-random-chat", "input_tokens"): prompt_tokens, ("tiny-random-chat", "output_tokens"): generated}
    assert billed(service) == expected
    trigger("publish_pending_usage")(None)
    service.queue.send(f'{{"v":1,"job_id":"{job_id}","tenant":"acme","deployment":"tiny-random-chat","payload":{{}}}}')
    drain(pump(service))
    assert billed(service) == expected  # billed once


def test_a_running_generation_can_be_cancelled_but_a_running_embedding_cannot(service: Inferq, gated: Gated) -> None:
    job_id = submit(service, {"prompt": "go on", "max_tokens": 100, "temperature": 0})
    worker = run_in_background(service)
    assert gated.paused.wait(30)
    assert service.gateway.cancel(ACME, job_id).status is JobStatus.CANCELLED
    gated.gate.set()
    worker.join(30)
    assert service.gateway.get_job(ACME, job_id).status is JobStatus.CANCELLED
    embedding = service.gateway.submit(ACME, service.config.default_deployment, {"input": "x"}).job
    service.store.replace(embedding.to(JobStatus.RUNNING))
    with pytest.raises(Conflict):
        service.gateway.cancel(ACME, embedding.id)


def test_a_redelivered_stream_that_reached_its_client_fails_and_bills_what_it_got(service: Inferq) -> None:
    job_id = submit(service, {"prompt": "go on", "max_tokens": 100, "stream": True})
    job = service.gateway.get_job(ACME, job_id)
    service.store.replace(job.to(JobStatus.RUNNING, attempts=1))  # a first worker started, wrote, and died
    service.blobs.put(chunk_key(job_id, 0), b'{"text": "abc", "p": 5, "c": 16}')
    drain(pump(service))
    job = service.gateway.get_job(ACME, job_id)
    assert job.status is JobStatus.FAILED and job.error is not None and job.error.code == "StreamInterrupted"
    assert {(e.meter, e.tokens) for e in job.usage} == {(Meter.INPUT_TOKENS, 5), (Meter.OUTPUT_TOKENS, 16)}
