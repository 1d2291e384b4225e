"""Billing through the real local host: what /embeddings reported is what /usage bills, per tenant, and a tenant
whose budget can't cover its next request's estimate is refused with 429 OutOfQuota."""

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from shared.domain.auth import hash_key
from shared.domain.billing import next_month_start
from tests.conftest import ADMIN_KEY, KEYS, RunningHost, start_host, stop_host, wait_for, write_config

pytestmark = pytest.mark.e2e
ALL_TIME = {"from": "2000-01-01", "granularity": "month"}

TEXTS = {
    "acme": ["The quick brown fox jumps over the lazy dog.", "Billing is per thousand tokens.", "a", "Exactly once!"],
    "globex": ["Globex Corporation, Cypress Creek.", "Hank Scorpio says hello to everyone in the room."],
}


def billed_tokens(c: httpx.Client, **params: str) -> int:
    r = c.get("/usage", params={**ALL_TIME, **params})
    assert r.status_code == 200, r.text
    return int(r.json()["total_tokens"])


def test_billed_tokens_equal_the_reported_prompt_tokens_per_tenant(host: RunningHost) -> None:
    reported = dict.fromkeys(TEXTS, 0)
    for tenant, texts in TEXTS.items():
        with host.client(KEYS[tenant]) as c:
            for i in range(len(texts)):
                r = c.post("/embeddings", json={"input": texts[: i + 1]})
                assert r.status_code == 200, r.text
                reported[tenant] += r.json()["usage"]["prompt_tokens"]
    assert reported["acme"] != reported["globex"]
    with host.client(KEYS["acme"]) as acme, host.client(KEYS["globex"]) as globex:
        wait_for(lambda: billed_tokens(acme) == reported["acme"] and billed_tokens(globex) == reported["globex"])
        body = acme.get("/usage", params=ALL_TIME).json()
        assert body["tenant"] == "acme" and body["total_tokens"] == reported["acme"]  # none of globex's
        assert {i["deployment"] for i in body["items"]} == {"all-MiniLM-L6-v2"}
        assert acme.get("/usage", params={"tenant": "globex"}).status_code == 403
    with host.client(ADMIN_KEY) as admin:
        assert billed_tokens(admin, tenant="globex") == reported["globex"]


BUDGETED = "initech"
BUDGET_KEY = "initech-key"


@pytest.fixture
def budget_host(tmp_path: Path) -> Iterator[RunningHost]:
    # A budget of 0.0000015 USD is 15 tokens at 0.0001 per 1K: the first request's estimate, exactly.
    tenant = (
        f'[[tenants]]\nname = "{BUDGETED}"\nkey_sha256 = ["{hash_key(BUDGET_KEY)}"]\nmonthly_budget = "0.0000015"\n'
    )
    config = write_config(tmp_path / "budget.toml", extra=tenant)
    running = start_host(tmp_path, env={"INFERQ_BUDGET_CACHE_S": "0"}, config=config)
    yield running
    stop_host(running)


def test_a_tenant_past_its_budget_gets_429_and_others_are_unaffected(budget_host: RunningHost) -> None:
    with budget_host.client(BUDGET_KEY) as c, budget_host.client(KEYS["acme"]) as acme:
        # Its estimate (UTF-8 bytes + 2 special tokens an input: 15 tokens) is what the budget has left.
        accepted = c.post("/embeddings", json={"input": ["first", "second"]}, headers={"Prefer": "respond-async"})
        assert accepted.status_code == 202, accepted.text
        job_url = accepted.headers["Operation-Location"]
        wait_for(lambda: c.get(job_url).json()["status"] == "succeeded")
        reported = c.get(job_url).json()["result"]["usage"]["prompt_tokens"]
        assert reported == 6  # settled to its real usage: 9 tokens' worth is left
        wait_for(lambda: billed_tokens(c) == reported)

        refused = c.post("/embeddings", json={"input": "one more"})  # an estimate of 10 tokens
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "OutOfQuota"
        assert "less than this request's estimated cost" in refused.json()["error"]["message"]
        expected = math.ceil((next_month_start(datetime.now(UTC)) - datetime.now(UTC)).total_seconds())
        assert abs(int(refused.headers["Retry-After"]) - expected) <= 60
        assert c.get("/usage").status_code == 200  # reading usage is not spending

        assert acme.post("/embeddings", json={"input": "acme has no budget"}).status_code == 200
