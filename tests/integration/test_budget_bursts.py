"""Budgets under bursts, on the HTTP app with the real model and the local host's worker and billing: 300
concurrent async requests against a budget of 0.00001 (100 embedding tokens) are admitted only as far as their
estimates fit, and what is billed stays within the budget; a request whose estimate alone is more than what is
left is refused (once, all 300 were accepted and billed 30 times the budget)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from functions.http.app import app
from functions.local.host import LocalHost
from shared.bootstrap import Inferq, bootstrap, set_app
from shared.domain.auth import hash_key
from shared.domain.config import load_config
from shared.settings import Settings
from tests.conftest import wait_for, write_config

KEY = "thrifty-key"
TENANTS = f'[[tenants]]\nname = "thrifty"\nkey_sha256 = ["{hash_key(KEY)}"]\nmonthly_budget = "0.00001"\n\n'
HEADERS = {"api-key": KEY, "Prefer": "respond-async"}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Inferq]:
    config = load_config(write_config(tmp_path / "budget.toml", extra=TENANTS))
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", config=tmp_path / "unused", max_batch_wait_ms=1)
    service = bootstrap(settings, config=config)
    set_app(service)
    yield service
    set_app(None)


@pytest.fixture
def client(service: Inferq) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def test_a_burst_of_300_async_requests_is_billed_within_the_budget(service: Inferq, client: TestClient) -> None:
    def post(_: int) -> int:
        return client.post("/embeddings", json={"input": "hello"}, headers=HEADERS).status_code

    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(post, range(300)))
    # "hello" reserves 7 tokens (5 bytes and 2 special tokens) at 0.0001 per 1,000: 14 fit in 0.00001.
    assert statuses.count(202) == 14 and statuses.count(429) == 286
    host = LocalHost.build(service)  # the worker runs them, the billing consumer bills them
    host.start()
    try:
        wait_for(lambda: _usage(client)[0] == 14 * 3)  # [CLS] hello [SEP]
    finally:
        host.stop()
    tokens, cost = _usage(client)
    assert cost <= Decimal("0.00001")
    refused = client.post("/embeddings", json={"input": ["hello world"] * 2048}, headers=HEADERS)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "OutOfQuota"
    assert "less than this request's estimated cost" in refused.json()["error"]["message"]


def _usage(client: TestClient) -> tuple[int, Decimal]:
    body = client.get("/usage", headers={"api-key": KEY}).json()
    return body["total_tokens"], Decimal(body["total_cost"])
