"""The worker pipeline on Azure Storage (Azurite) with the real model: claim-check for large requests, the
64 KiB message limit, and base64 on the wire exactly as the Functions queue trigger reads it."""

from __future__ import annotations

import base64
import contextlib
import json
import random
import string
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from functions.azure.indexing import trigger
from functions.local.runtime import QueuePump
from shared.adapters.azure.queue import MAX_MESSAGE_BYTES, AzureJobQueue
from shared.bindings import JOB_QUEUE, POISON_QUEUE
from shared.bootstrap import Inferq, bootstrap, set_app
from shared.domain.auth import Caller
from shared.domain.errors import NotFound
from shared.domain.jobs import JobStatus
from shared.schemas.messages import JobMessage
from shared.settings import Settings
from tests.azurite import Azurite
from tests.conftest import wait_for

ACME = Caller("acme")


@pytest.fixture
def connection(azurite: Azurite) -> str:
    return azurite.fresh_connection_string()  # the fixed names of shared/bindings.py, in an account of its own


@pytest.fixture
def service(tmp_path: Path, config_path: Path, connection: str) -> Iterator[Inferq]:
    settings = Settings(
        _env_file=None,
        backend="azure",
        data_dir=tmp_path / "data",
        config=config_path,
        max_batch_wait_ms=1,
        AzureWebJobsStorage=connection,
    )
    svc = bootstrap(settings)
    set_app(svc)
    yield svc
    set_app(None)


@pytest.fixture
def pump(service: Inferq) -> Iterator[QueuePump]:
    p = QueuePump(
        service.queue, trigger("run_job"), poison=service.poison, max_dequeue_count=5,
        visibility_timeout_s=60, concurrency=2,
    )  # fmt: skip
    yield p
    p.shutdown()


def raw_queue(connection: str, name: str = JOB_QUEUE) -> QueueClient:
    """A plain client with no encode/decode policy: the bytes on the wire."""
    client = QueueClient.from_connection_string(connection, name)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()  # provisioned by the Bicep template on Azure
    return client


def run_until_done(pump: QueuePump, service: Inferq, job_id: str) -> None:
    def done() -> bool:
        pump.pump_once()
        job = service.store.get(job_id)
        return job is not None and job.status.terminal

    wait_for(done, timeout=120)


def texts(n: int, chars: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(400)]
    out = []
    for i in range(n):
        text = f"document {i}:"
        while len(text) < chars:
            text += " " + rng.choice(words)
        out.append(text[:chars])
    return out


def test_a_100kb_request_goes_by_claim_check_and_returns_the_right_result(
    service: Inferq, pump: QueuePump, connection: str
) -> None:
    inputs = texts(40, 2500)
    submitted = service.gateway.submit(ACME, service.config.default_deployment, {"input": inputs})
    job = submitted.job
    assert job.payload_ref == f"payloads/{job.id}.json"
    assert len(service.blobs.get(job.payload_ref)) > 100_000

    (wire,) = raw_queue(connection).peek_messages(max_messages=1)
    assert len(wire.content) < MAX_MESSAGE_BYTES
    message = JobMessage.model_validate_json(base64.b64decode(wire.content))
    assert message.payload is None and message.payload_ref == job.payload_ref

    run_until_done(pump, service, job.id)
    done = service.gateway.get_job(ACME, job.id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result is not None and len(done.result["data"]) == 40
    expected = service.registry.runtime(service.config.default_deployment).predict(inputs)
    got = np.array([item["embedding"] for item in done.result["data"]])
    assert np.allclose(got, np.array([e.vector for e in expected]), atol=1e-5)
    assert done.result["usage"]["prompt_tokens"] == sum(e.tokens for e in expected)
    with pytest.raises(NotFound):
        service.blobs.get(job.payload_ref)  # the claim-checked payload goes once the job is terminal
    # Its outcome is in the per-deployment figures on Table storage, once the worker's batch of them is written.
    assert service.worker.flush_outcomes() == 1
    assert done.finished_at is not None
    outcomes = service.stats.outcomes(done.created_at, done.finished_at + timedelta(seconds=1))
    (outcome,) = [o for o in outcomes if o.job_id == job.id]
    assert (outcome.endpoint, outcome.status, outcome.usage) == (
        "all-MiniLM-L6-v2",
        "succeeded",
        {"input_tokens": done.result["usage"]["prompt_tokens"]},
    )


def test_the_largest_inline_payload_still_fits_one_queue_message(service: Inferq, connection: str) -> None:
    limit = service.settings.inline_payload_max_bytes
    overhead = len(json.dumps({"input": ""}, separators=(",", ":")))
    job = service.gateway.submit(ACME, service.config.default_deployment, {"input": "x" * (limit - overhead)}).job
    assert job.payload_ref is None  # inline, right at the threshold
    (wire,) = raw_queue(connection).peek_messages(max_messages=1)
    assert len(wire.content) <= MAX_MESSAGE_BYTES
    assert JobMessage.model_validate_json(base64.b64decode(wire.content)).payload is not None


def test_messages_on_the_wire_are_base64_of_the_json_message(service: Inferq, connection: str) -> None:
    job = service.gateway.submit(ACME, service.config.default_deployment, {"input": "héllo wörld"}).job
    (wire,) = raw_queue(connection).peek_messages(max_messages=1)
    decoded = base64.b64decode(wire.content, validate=True).decode("utf-8")
    expected = {"v": 1, "job_id": job.id, "tenant": "acme", "deployment": "all-MiniLM-L6-v2"}
    assert json.loads(decoded) == {**expected, "payload": {"input": "héllo wörld"}}


def test_a_message_base64_written_by_another_producer_is_processed(
    service: Inferq, pump: QueuePump, connection: str
) -> None:
    body = JobMessage(
        job_id="job_batchpipeline1", tenant="acme", deployment="all-MiniLM-L6-v2", payload={"input": "hi"}
    )
    raw_queue(connection).send_message(base64.b64encode(body.model_dump_json().encode()).decode())
    run_until_done(pump, service, "job_batchpipeline1")
    job = service.gateway.get_job(ACME, "job_batchpipeline1")
    assert job.status is JobStatus.SUCCEEDED and job.result is not None and len(job.result["data"]) == 1


def test_a_message_that_is_not_base64_goes_straight_to_the_poison_queue(
    service: Inferq, pump: QueuePump, connection: str
) -> None:
    body = JobMessage(job_id="job_rawtext1", tenant="acme", deployment="all-MiniLM-L6-v2", payload={"input": "hi"})
    raw_queue(connection).send_message(body.model_dump_json())  # forgot the base64 the trigger expects
    poison = service.poison
    assert isinstance(poison, AzureJobQueue) and poison.name == POISON_QUEUE
    wait_for(lambda: pump.pump_once() >= 0 and poison.count() == 1)
    assert isinstance(service.queue, AzureJobQueue) and service.queue.count() == 0
    (moved,) = poison.receive(1, 30)
    assert moved.body == body.model_dump_json() and moved.dequeue_count == 1  # not five: decoding can't improve
    assert service.store.get("job_rawtext1") is None  # never handed to the worker
