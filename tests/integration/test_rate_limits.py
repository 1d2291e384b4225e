"""Per-tenant rate limits on the HTTP app with an injected clock: the x-ratelimit-* headers on every response,
429 with Retry-After past a limit, a full bucket again once the window passed, and tokens settled to the real
usage when a sync request waited for its job (the local host's worker runs it, on the real model)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from functions.http.app import app
from functions.local.host import LocalHost
from shared.bootstrap import Inferq, bootstrap, set_app
from shared.domain.auth import hash_key
from shared.domain.config import load_config
from shared.settings import Settings
from tests.conftest import KEYS, wait_for, write_config

LIMITED = {"requests": "initech-key", "tokens": "hooli-key"}
TENANTS = (
    f'[[tenants]]\nname = "initech"\nkey_sha256 = ["{hash_key(LIMITED["requests"])}"]\nrequests_per_minute = 2\n\n'
    f'[[tenants]]\nname = "hooli"\nkey_sha256 = ["{hash_key(LIMITED["tokens"])}"]\ntokens_per_minute = 1000\n\n'
)
ASYNC = {"Prefer": "respond-async"}


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limited(tmp_path: Path, clock: Clock) -> Iterator[Inferq]:
    config = load_config(write_config(tmp_path / "limits.toml", extra=TENANTS))
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", config=tmp_path / "unused", max_batch_wait_ms=1)
    service = bootstrap(settings, config=config, monotonic=clock)
    set_app(service)
    yield service
    set_app(None)


@pytest.fixture
def client(limited: Inferq) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def post(client: TestClient, tenant_key: str, text: str | list[str] = "hello", headers: dict[str, str] = ASYNC) -> dict:
    r = client.post("/embeddings", json={"input": text}, headers={"api-key": tenant_key, **headers})
    return {"status": r.status_code, "headers": r.headers, "body": r.json()}


def test_past_the_requests_limit_is_429_with_retry_after_until_the_window_passes(
    client: TestClient, clock: Clock
) -> None:
    first, second = post(client, LIMITED["requests"]), post(client, LIMITED["requests"])
    assert (first["status"], second["status"]) == (202, 202)
    assert first["headers"]["x-ratelimit-limit-requests"] == "2"
    assert [r["headers"]["x-ratelimit-remaining-requests"] for r in (first, second)] == ["1", "0"]
    assert second["headers"]["x-ratelimit-reset-requests"] == "1m0s"

    refused = post(client, LIMITED["requests"])
    assert refused["status"] == 429
    assert refused["body"]["error"]["code"] == "RateLimitExceeded"
    assert "2 requests per minute" in refused["body"]["error"]["message"]
    assert (refused["headers"]["Retry-After"], refused["headers"]["retry-after-ms"]) == ("30", "30000")
    assert refused["headers"]["x-ratelimit-remaining-requests"] == "0"
    assert refused["headers"]["azureml-model-deployment"] == "all-MiniLM-L6-v2"  # chosen before the limit
    assert "x-ratelimit-limit-tokens" not in refused["headers"]  # no token limit for this tenant

    clock.now += 60  # the window passed: the bucket is full again
    again = post(client, LIMITED["requests"])
    assert again["status"] == 202 and again["headers"]["x-ratelimit-remaining-requests"] == "1"

    other = post(client, KEYS["acme"])  # another tenant, without limits: unaffected, no headers
    assert other["status"] == 202 and not any(h.startswith("x-ratelimit") for h in other["headers"])


def test_past_the_tokens_limit_is_429_and_the_estimate_is_what_it_charges(client: TestClient, clock: Clock) -> None:
    big = ["word " * 100] * 3  # 500 characters each: an estimate of 256 tokens each (the model truncates there)
    accepted = post(client, LIMITED["tokens"], big)
    assert accepted["status"] == 202 and accepted["headers"]["x-ratelimit-remaining-tokens"] == "232"
    refused = post(client, LIMITED["tokens"], big)
    assert refused["status"] == 429 and refused["headers"]["Retry-After"] == "33"  # 536 short at 1000/min
    assert refused["headers"]["x-ratelimit-limit-tokens"] == "1000"
    clock.now += 33
    assert post(client, LIMITED["tokens"], big)["status"] == 202


def test_a_sync_request_settles_its_tokens_to_the_real_usage(limited: Inferq, client: TestClient) -> None:
    host = LocalHost.build(limited)  # the worker, so the sync request gets its result
    host.start()
    try:
        text = "The quick brown fox jumps over the lazy dog. " * 4  # 180 characters: an estimate of 182 tokens
        done = post(client, LIMITED["tokens"], text, headers={})
    finally:
        host.stop()
    assert done["status"] == 200, done["body"]
    assert done["headers"]["x-ratelimit-remaining-tokens"] == "818"  # reserved at admission: the estimate
    used = done["body"]["usage"]["prompt_tokens"]
    assert used != 182
    after = post(client, LIMITED["tokens"], "abcd")  # 6 tokens reserved; the clock has not moved
    assert after["headers"]["x-ratelimit-remaining-tokens"] == str(1000 - used - 6)


def test_an_async_job_is_settled_to_its_real_usage_when_it_ends(limited: Inferq, client: TestClient) -> None:
    host = LocalHost.build(limited)
    host.start()
    try:
        first = post(client, LIMITED["tokens"], "hello world")  # 13 reserved, 4 used
        assert first["status"] == 202 and first["headers"]["x-ratelimit-remaining-tokens"] == "987"
        job = f"/jobs/{first['body']['id']}"
        headers = {"api-key": LIMITED["tokens"]}
        wait_for(lambda: client.get(job, headers=headers).json()["status"] == "succeeded")
    finally:
        host.stop()
    after = post(client, LIMITED["tokens"], "abcd")  # nobody waited for the first: settled all the same
    assert after["headers"]["x-ratelimit-remaining-tokens"] == str(1000 - 4 - 6)


def test_cjk_text_can_not_take_more_tokens_in_a_minute_than_the_limit(limited: Inferq, client: TestClient) -> None:
    """Three inputs of 330 CJK characters take 3 x 256 real tokens (the model truncates there): 3 times what 4
    characters a token estimated, when 5 such async requests in a minute were billed 3,840 tokens."""
    texts = ["日本語のテキストです。" * 30] * 3
    answers = [post(client, LIMITED["tokens"], texts) for _ in range(5)]
    assert [a["status"] for a in answers] == [202, 429, 429, 429, 429]
    host = LocalHost.build(limited)
    host.start()
    headers = {"api-key": LIMITED["tokens"]}
    try:
        jobs = [f"/jobs/{a['body']['id']}" for a in answers if a["status"] == 202]
        wait_for(lambda: all(client.get(j, headers=headers).json()["status"] == "succeeded" for j in jobs))
    finally:
        host.stop()
    used = sum(client.get(j, headers=headers).json()["result"]["usage"]["prompt_tokens"] for j in jobs)
    assert used == 768 <= 1000
    assert post(client, LIMITED["tokens"], texts)["status"] == 429  # settled: 232 left, still short


def test_idempotent_repeats_do_not_consume_the_rate_limit(client: TestClient) -> None:
    key = {"Idempotency-Key": "one-job", **ASYNC}
    statuses = [post(client, LIMITED["requests"], headers=key)["status"] for _ in range(12)]
    assert statuses == [202] * 12
    assert post(client, LIMITED["requests"])["status"] == 202  # the second request of the minute is still free
    assert post(client, LIMITED["requests"])["status"] == 429
