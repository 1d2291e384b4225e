"""What the HTTP side does on the event loop, where that costs less than a thread hand-off. Where a request is
admitted and queued: a small embeddings request on the embedded backend on the loop (one local SQLite commit),
everything else in a worker thread: a kind whose check tokenizes or decodes, a body too large to go inline, a
budgeted tenant, and any backend whose store is across a network. And a stream's chunks, in process: small local
files, read on the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.local.host import LocalHost
from shared.application.gateway import Gateway
from shared.bootstrap import Inferq, bootstrap
from shared.domain.auth import Caller
from shared.settings import Settings
from tests.conftest import KEYS, app_client, write_config

ACME = {"api-key": KEYS["acme"]}
TINY_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)


@contextmanager
def serving_worker(service: Inferq) -> Iterator[None]:
    """The local host's queue side on `service`: its pump runs the jobs the app queues."""
    local = LocalHost.build(service)
    local.start()
    try:
        yield
    finally:
        local.stop()


@pytest.fixture
def on_loop(service: Inferq) -> Iterator[tuple[TestClient, list[bool]]]:
    """The app on the real service, recording for every `accept` whether it ran on the event loop's thread."""
    seen: list[bool] = []
    accept = Gateway.accept

    def recording(self: Gateway, *args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
            seen.append(True)
        except RuntimeError:  # a worker thread runs no loop
            seen.append(False)
        return accept(self, *args, **kwargs)

    Gateway.accept = recording  # type: ignore[method-assign]
    try:
        with app_client(service) as client:
            yield client, seen
    finally:
        Gateway.accept = accept  # type: ignore[method-assign]


def test_a_small_embeddings_request_is_admitted_on_the_event_loop(
    on_loop: tuple[TestClient, list[bool]],
) -> None:
    client, seen = on_loop
    r = client.post("/embeddings", json={"input": "hello"}, headers={**ACME, "Prefer": "respond-async"})
    assert r.status_code == 202 and seen == [True]


def test_a_body_too_large_to_go_inline_is_admitted_in_a_thread(
    on_loop: tuple[TestClient, list[bool]], service: Inferq
) -> None:
    client, seen = on_loop
    texts = ["word " * 1000] * ((service.settings.inline_payload_max_bytes // 5000) + 2)
    r = client.post("/embeddings", json={"input": texts}, headers={**ACME, "Prefer": "respond-async"})
    assert r.status_code == 202 and seen == [False]


def test_chat_and_image_requests_are_admitted_in_a_thread(on_loop: tuple[TestClient, list[bool]]) -> None:
    client, seen = on_loop
    chat = {"model": "tiny-random-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert client.post("/chat/completions", json=chat, headers={**ACME, "Prefer": "respond-async"}).status_code == 202
    image = {"model": "tiny-random-clip", "input": [{"image": TINY_PNG}]}
    r = client.post("/images/embeddings", json=image, headers={**ACME, "Prefer": "respond-async"})
    assert r.status_code == 202, r.text
    assert seen == [False, False]


def test_with_the_store_across_a_network_every_request_is_admitted_in_a_thread(service: Inferq) -> None:
    gateway, acme = service.gateway, Caller("acme")
    route = gateway.route(None, None)
    assert gateway.accepts_on_loop(acme, route, 100)
    assert not gateway.accepts_on_loop(acme, route, None)  # chunked: its size unknown
    gateway.cross_process = True  # what the Azure backend sets: a commit there is an HTTP round trip
    assert not gateway.accepts_on_loop(acme, route, 100)


def test_a_budgeted_tenants_request_is_admitted_in_a_thread(tmp_path: Path) -> None:
    """Its admission may re-read the tenant's month from the ledger: not on the event loop."""
    config = write_config(tmp_path / "inferq.toml", extra='[[tenants]]\nname = "capped"\nmonthly_budget = "5"\n\n')
    service = bootstrap(Settings(_env_file=None, data_dir=tmp_path / "data", config=config))
    route = service.gateway.route(None, None)
    assert service.gateway.accepts_on_loop(Caller("acme"), route, 100)
    assert not service.gateway.accepts_on_loop(Caller("capped"), route, 100)


def test_in_process_a_streams_chunks_are_read_on_the_event_loop(service: Inferq) -> None:
    """A hand-off per read cost more than the read, and under the generating thread it waited for the interpreter
    lock both ways (the first chunk reached the client several milliseconds after it was written)."""
    from shared.application import gateway as gateway_module

    on_loop: list[bool] = []
    read = gateway_module.read_chunks

    def recording(*args: Any) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return read(*args)

    gateway_module.read_chunks = recording  # type: ignore[assignment]
    try:
        with app_client(service) as client, serving_worker(service):
            body = {"model": "tiny-random-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
            with client.stream("POST", "/chat/completions", json={**body, "stream": True}, headers=ACME) as r:
                assert r.status_code == 200
                lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    finally:
        gateway_module.read_chunks = read  # type: ignore[assignment]
    assert lines[-1] == "data: [DONE]" and on_loop and all(on_loop)
