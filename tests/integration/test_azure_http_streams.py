"""The Azure HTTP function on HTTP streams, driven the way the Python worker drives it: the registered function
object, called from the worker's web server with the FastAPI request the host forwarded, its response served by
uvicorn. A chat stream's first chunk leaves before the job ends, and every route answers as the local host does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azurefunctions.extensions.base import RequestTrackerMeta
from azurefunctions.extensions.http.fastapi import Request, WebApp
from fastapi import FastAPI
from fastapi.testclient import TestClient

from functions.azure.indexing import bindings, trigger
from functions.http import app as http_api
from shared.bootstrap import Inferq, set_app
from shared.domain.jobs import JobStatus
from tests.conftest import KEYS, serving
from tests.integration.test_chat_worker import STORY, Gated


def worker_web_server(function_name: str) -> FastAPI:
    """What the Python worker serves with HTTP streams on (azure-functions-python-worker: `http_v2.py`
    `initialize_http_server`, and `dispatcher.py` `_handle__invocation_request`): the extension's `WebApp`, one
    catch-all route. The host forwards each request there; the dispatcher copies the route parameters the host
    parsed into the request, passes it as the function's trigger argument, and the route returns whatever the
    function returned, for uvicorn (the extension's `WebServer`) to serve."""
    function = trigger(function_name)
    (http_trigger,) = [b for b in bindings(function_name) if b["type"] == "httpTrigger"]
    web_app = WebApp()

    @web_app.route
    async def catch_all(request: Request):  # type: ignore[no-untyped-def]
        route_params = {"route": request.url.path.removeprefix("/")}  # the host's match of "/{*route}"
        RequestTrackerMeta.get_synchronizer().sync_route_params(request, route_params)
        return await function(**{http_trigger["name"]: request})

    app: FastAPI = web_app.get_app()
    return app


@pytest.fixture
def installed(service: Inferq) -> Iterator[None]:
    set_app(service)
    yield
    set_app(None)


@pytest.fixture
def url(service: Inferq, installed: None) -> Iterator[str]:
    with serving(worker_web_server("http_app_func"), service) as running:
        yield running


@pytest.fixture
def gated(service: Inferq, monkeypatch: pytest.MonkeyPatch) -> Gated:
    gate = Gated(service.registry.runtime(service.config.deployment("tiny-random-chat")), pause_after=20)
    monkeypatch.setattr(service.registry, "runtime", lambda deployment: gate)
    return gate


def _data(event: str) -> Any:
    assert event.startswith("data: "), event
    return event.removeprefix("data: ")


def test_the_first_chunk_of_a_stream_leaves_the_function_before_the_job_ends(
    url: str, service: Inferq, gated: Gated
) -> None:
    body = {"model": "tiny-random-chat", "messages": STORY, "max_tokens": 60, "temperature": 0, "stream": True}
    with (
        httpx.Client(base_url=url, headers={"api-key": KEYS["acme"]}, timeout=30) as client,
        client.stream("POST", "/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        job_id = response.headers["x-inferq-job-id"]
        events = (line for line in response.iter_lines() if line)
        first = json.loads(_data(next(events)))
        assert first["choices"][0]["delta"]["role"] == "assistant"
        # The generation is held at token 20 until the gate opens: the job can't have ended.
        job = service.store.get(job_id)
        assert job is not None and not job.status.terminal, job
        assert gated.generated == []
        gated.gate.set()
        rest = [_data(event) for event in events]
    assert rest[-1] == "[DONE]"
    chunks = [json.loads(data) for data in rest[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    job = service.store.get(job_id)
    assert job is not None and job.status is JobStatus.SUCCEEDED
    assert gated.generated == [60]


HEADERS = {"api-key": KEYS["acme"]}
REQUESTS = {
    "health": ("GET", "/health", {}, None),
    "no key": ("GET", "/info?api-version=2024-05-01-preview", {}, None),
    "models": ("GET", "/models", HEADERS, None),
    "bad body": ("POST", "/embeddings", HEADERS, {"model": "all-MiniLM-L6-v2", "input": 1}),
    "unknown model": ("POST", "/embeddings", HEADERS, {"model": "nope", "input": "hi"}),
    "unknown job": ("GET", "/jobs/nope", HEADERS, None),
    "unknown route": ("GET", "/nope", HEADERS, None),
}


@pytest.mark.parametrize("request_", REQUESTS.values(), ids=REQUESTS.keys())
def test_the_function_answers_as_the_local_host_does(installed: None, request_: tuple[Any, ...]) -> None:
    method, path, headers, body = request_
    answers = []
    for app in (worker_web_server("http_app_func"), http_api.app):
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.request(method, path, headers=headers, json=body)
        answers.append((response.status_code, response.headers.items(), response.content))
    on_azure, local = answers
    assert on_azure == local
