"""/openapi.json and /docs answer API keys only, or nobody (`INFERQ_DOCS=off`, the default on Azure); the routes
the SDKs call are the same either way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from functions.http.app import app
from shared.bootstrap import Inferq, bootstrap, set_app
from shared.domain.config import AppConfig
from shared.settings import Settings
from tests.conftest import ADMIN_KEY, KEYS

DOCS = ["/openapi.json", "/docs"]


def serve(service: Inferq) -> Iterator[TestClient]:
    set_app(service)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    set_app(None)


@pytest.fixture
def client(service: Inferq) -> Iterator[TestClient]:
    yield from serve(service)


@pytest.fixture
def docs_off(settings: Settings, config: AppConfig) -> Iterator[TestClient]:
    yield from serve(bootstrap(settings.model_copy(update={"docs": "off"}), config=config))


@pytest.mark.parametrize("path", DOCS)
@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_docs_without_a_valid_key_are_401(client: TestClient, path: str, key: str | None) -> None:
    r = client.get(path, headers={"api-key": key} if key else {})
    assert r.status_code == 401 and r.json()["error"]["code"] == "Unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    assert "paths" not in r.text


@pytest.mark.parametrize("key", [KEYS["acme"], ADMIN_KEY])
def test_the_schema_answers_any_api_key(client: TestClient, key: str) -> None:
    r = client.get("/openapi.json", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert {"/embeddings", "/chat/completions", "/completions", "/score", "/jobs/{job_id}"} <= set(paths)
    assert not {"/docs", "/openapi.json"} & set(paths)


def test_the_docs_page_carries_the_schema_it_shows(client: TestClient) -> None:
    # A browser sends the key with the page (a header extension, or `curl -H` to a file), not with its fetches.
    r = client.get("/docs", headers={"api-key": KEYS["acme"]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '"spec": {"openapi": ' in r.text and '"/embeddings"' in r.text


@pytest.mark.parametrize("path", ["/redoc", "/docs/oauth2-redirect"])
def test_the_other_default_fastapi_pages_are_gone(client: TestClient, path: str) -> None:
    assert client.get(path, headers={"api-key": KEYS["acme"]}).status_code == 404


@pytest.mark.parametrize("path", DOCS)
@pytest.mark.parametrize("key", [None, KEYS["acme"], ADMIN_KEY])
def test_switched_off_the_docs_answer_as_a_route_that_does_not_exist(
    docs_off: TestClient, path: str, key: str | None
) -> None:
    r = docs_off.get(path, headers={"api-key": key} if key else {})
    missing = docs_off.get("/no-such-route", headers={"api-key": key} if key else {})
    assert (r.status_code, r.json()) == (missing.status_code, missing.json()) == (404, r.json())
    assert r.json()["error"]["code"] == "NotFound"


def test_switched_off_the_sdk_routes_still_answer(docs_off: TestClient) -> None:
    headers = {"api-key": KEYS["acme"], "Prefer": "respond-async"}
    assert docs_off.post("/embeddings", json={"input": "x"}, headers=headers).status_code == 202
    assert docs_off.get("/models", headers=headers).json()["data"]
    assert docs_off.get("/health").status_code == 200


def test_the_docs_are_off_on_azure_unless_switched_on() -> None:
    def served(**values: str | None) -> bool:
        return Settings(_env_file=None, **values).docs_served  # type: ignore[call-arg]

    assert served(backend="sqlite", docs=None) and not served(backend="azure", docs=None)
    assert served(backend="azure", docs="key") and not served(backend="sqlite", docs="off")
