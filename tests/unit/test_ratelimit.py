"""Rate limits on an injected clock: token buckets per tenant, the x-ratelimit-* headers, 429 with Retry-After,
and buckets that are full again a minute after they were emptied."""

import pytest

from functions.http.headers import duration, rate_headers
from shared.domain.config import Deployment, Tenant
from shared.domain.errors import RateLimited
from shared.domain.ratelimit import RateLimiter
from shared.runtimes.registry import KINDS


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, rpm: int | None = 3, tpm: int | None = None) -> RateLimiter:
    tenants = [Tenant(name="acme", requests_per_minute=rpm, tokens_per_minute=tpm), Tenant(name="globex")]
    return RateLimiter(tenants, clock=clock)


def test_requests_over_the_limit_are_refused_with_retry_after_until_the_window_passes() -> None:
    clock = Clock()
    limits = limiter(clock, rpm=3)
    remaining = []
    for _ in range(3):
        state = limits.admit("acme", 0)
        assert state is not None
        remaining.append(rate_headers(state)["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]
    with pytest.raises(RateLimited) as refused:
        limits.admit("acme", 0)
    assert refused.value.retry_after_s == 20  # one request comes back every 60/3 seconds
    assert refused.value.code == "RateLimitExceeded" and "3 requests per minute" in refused.value.message
    headers = rate_headers(refused.value.state)
    assert headers == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m0s",
    }
    clock.now += 19.9
    with pytest.raises(RateLimited):
        limits.admit("acme", 0)  # a refusal charges nothing, and the bucket is not there yet
    clock.now += 40.1  # a minute after the bucket was emptied: full again
    state = limits.admit("acme", 0)
    assert state is not None and rate_headers(state)["x-ratelimit-remaining-requests"] == "2"
    assert limits.admit("globex", 0) is None  # a tenant without limits has no buckets (and no headers)


def test_tokens_are_charged_by_estimate_and_settled_to_the_real_usage() -> None:
    clock = Clock()
    limits = limiter(clock, rpm=None, tpm=1000)
    state = limits.admit("acme", 600)
    assert state is not None and rate_headers(state) == {
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "400",
        "x-ratelimit-reset-tokens": "36s",
    }
    with pytest.raises(RateLimited) as refused:
        limits.admit("acme", 500)
    assert refused.value.retry_after_s == 6  # 100 tokens short at 1000/min
    limits.settle("acme", estimated=600, actual=100)  # the job used less than its estimate: 500 come back
    state = limits.admit("acme", 500)
    assert state is not None and state.limits[0].remaining == 400


def test_a_request_larger_than_the_whole_limit_passes_on_a_full_bucket_and_the_debt_delays_the_next() -> None:
    clock = Clock()
    limits = limiter(clock, rpm=None, tpm=100)
    assert limits.admit("acme", 250) is not None  # never refused forever
    with pytest.raises(RateLimited) as refused:
        limits.admit("acme", 10)
    assert refused.value.retry_after_s == 96  # back from -150 to +10 at 100 tokens a minute
    clock.now += 60 * 2.5
    assert limits.admit("acme", 0) is not None and limits.admit("acme", 100) is not None


def test_duration_is_formatted_like_openai() -> None:
    assert [duration(s) for s in (0.02, 1, 2.5, 59.9999, 60, 360, 61.25)] == [
        "20ms",
        "1s",
        "2.5s",
        "1m0s",
        "1m0s",
        "6m0s",
        "1m1.25s",
    ]


def deployment(kind: str, max_tokens: int = 256) -> Deployment:
    model = {"source": "x", "files": {}}
    extra = {"script": "s.py", "code": {"source": "x", "files": {"s.py": "0" * 64}}} if kind == "score" else {}
    return Deployment(name="d", kind=kind, model_name="m", model=model, max_tokens=max_tokens, **extra)


def test_the_token_estimate_bounds_what_a_job_may_use() -> None:
    # UTF-8 bytes plus 2 special tokens per text, capped at the model's max_tokens; for chat, the template's
    # allowance per message and the most the generation may produce.
    assert estimate_tokens(deployment("embeddings"), {"input": ["abcd", "abcde"]}) == (4 + 2) + (5 + 2)
    assert estimate_tokens(deployment("embeddings"), {"input": "é" * 40}) == 80 + 2  # 2 bytes a character
    assert estimate_tokens(deployment("embeddings"), {"input": ["a" * 1000, "b"]}) == 256 + 3  # truncated at 256
    chat = deployment("chat-completion", max_tokens=64)
    messages = [{"role": "user", "content": "a" * 8}, {"role": "user", "content": [{"type": "text", "text": "bcde"}]}]
    assert estimate_tokens(chat, {"messages": messages}) == (10 + 16) + (6 + 16) + 64
    assert estimate_tokens(chat, {"prompt": "abcdefgh", "max_tokens": 5}) == 10 + 5
    assert estimate_tokens(chat, {"prompt": "abcdefgh", "max_tokens": 500}) == 10 + 64  # refused later: at most 64
    assert estimate_tokens(deployment("score"), {"data": [1, 2, 3]}) == 0


def estimate_tokens(d: Deployment, payload: dict[str, object]) -> int:
    return KINDS[d.kind].estimate(d, payload)
