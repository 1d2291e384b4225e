"""`/health/ready` on the Azure backend: 200 while storage answers, 503 naming the components that don't when
Azurite is stopped mid-run, 200 again once it is back. `/health` (liveness) stays 200 throughout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from functions.http.app import app as http_api
from shared.bootstrap import bootstrap, set_app
from shared.domain.config import AppConfig
from shared.settings import Settings
from tests.integration.test_adapter_ping import OwnAzurite, own_azurite  # noqa: F401 (the fixture)


@pytest.fixture
def client(own_azurite: OwnAzurite, tmp_path: Path, config: AppConfig) -> Iterator[TestClient]:  # noqa: F811
    settings = Settings(
        _env_file=None, backend="azure", data_dir=tmp_path / "data", AzureWebJobsStorage=own_azurite.connection_string()
    )
    set_app(bootstrap(settings, config=config))
    with TestClient(http_api) as c:
        yield c
    set_app(None)


def test_readiness_names_the_storage_that_went_away_and_recovers(client: TestClient, own_azurite: OwnAzurite) -> None:  # noqa: F811
    r = client.get("/health/ready")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ready" and set(r.json()["components"].values()) == {"ok"}

    own_azurite.stop()
    r = client.get("/health/ready")
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    body = r.json()
    assert body["error"]["code"] == "NotReady"
    down = {name for name, state in body["components"].items() if state != "ok"}
    # Storage-backed components fail; the usage stream is the embedded log here (no Event Hubs connection).
    assert down == {"job queue", "job store", "blob store", "usage ledger", "deployment stats", "budget reservations"}
    assert all(name in body["error"]["message"] for name in down)
    assert client.get("/health").status_code == 200  # liveness is not readiness

    own_azurite.start()
    r = client.get("/health/ready")
    assert r.status_code == 200, r.text
