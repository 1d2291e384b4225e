"""A streaming client that leaves mid-stream, against the real HTTP app under uvicorn in this process (so the
generation can be paused): the route cancels the job, the worker stops, and the tokens generated are billed."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from functions.http import app as http_api
from shared.bootstrap import Inferq, set_app
from shared.domain.auth import Caller
from shared.domain.jobs import JobStatus
from shared.schemas.usage import Meter
from tests.conftest import KEYS, serving, wait_for
from tests.integration.test_chat_worker import STORY, Gated


@pytest.fixture
def url(service: Inferq) -> Iterator[str]:
    set_app(service)
    with serving(http_api.app, service) as running:
        yield running
    set_app(None)


@pytest.fixture
def gated(service: Inferq, monkeypatch: pytest.MonkeyPatch) -> Gated:
    gate = Gated(service.registry.runtime(service.config.deployment("tiny-random-chat")), pause_after=20)
    monkeypatch.setattr(service.registry, "runtime", lambda deployment: gate)
    return gate


def test_a_client_leaving_mid_stream_cancels_the_job_which_bills_the_tokens_generated(
    url: str, service: Inferq, gated: Gated
) -> None:
    body = {"model": "tiny-random-chat", "messages": STORY, "max_tokens": 200, "temperature": 0, "stream": True}
    with (
        httpx.Client(base_url=url, headers={"api-key": KEYS["acme"]}, timeout=30) as client,
        client.stream("POST", "/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        job_id = response.headers["x-inferq-job-id"]
        events = response.iter_lines()
        assert '"role":"assistant"' in next(e for e in events if e)
        assert '"content":' in next(e for e in events if e)  # the first 16 tokens arrived
        assert gated.paused.wait(30)
    # The connection is closed with the generation paused at token 20.
    wait_for(lambda: service.gateway.get_job(Caller("acme"), job_id).status is JobStatus.CANCELLED)
    gated.gate.set()
    wait_for(lambda: bool(service.gateway.get_job(Caller("acme"), job_id).usage))
    (generated,) = gated.generated
    job = service.gateway.get_job(Caller("acme"), job_id)
    assert job.status is JobStatus.CANCELLED
    assert {e.meter: e.tokens for e in job.usage}[Meter.OUTPUT_TOKENS] == generated < 200
    wait_for(lambda: not service.blobs.list_keys(f"streams/{job_id}/", 10))
