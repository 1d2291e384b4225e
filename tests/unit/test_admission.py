"""Admission on fakes: a request's estimate is reserved against its tenant's budget and token rate, atomically,
and settled to the job's real usage when the job ends, sync or async, in this process or another; idempotent
repeats cost nothing. (Fake embeddings: the estimate is 10 tokens a word, the real usage 1 token a word, at
0.0001 per 1,000 tokens; THRIFTY's budget of 0.00001 is 100 real tokens.)"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from shared.adapters.signals import InProcessJobSignals
from shared.application.gateway import Submitted
from shared.bootstrap import Inferq
from shared.domain.auth import Caller
from shared.domain.errors import InvalidInput, QuotaExceeded, RateLimited
from shared.domain.jobs import JobStatus
from shared.domain.usage_report import cost_of
from tests.unit.fakes import EMBED, LIMITED, METERED, THRIFTY, fake_app, logged_bodies, memory_adapters, run_next

BUDGET = Decimal("0.00001")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def send(app: Inferq, caller: Caller, text: str = "a", key: str | None = None) -> Submitted:
    return app.gateway.submit(caller, app.config.deployment(EMBED), {"input": text}, key)


def burst(app: Inferq, caller: Caller, n: int) -> list[Submitted]:
    """`n` requests at once, from 32 threads; the ones admitted."""

    def one(_: int) -> Submitted | None:
        try:
            return send(app, caller)
        except QuotaExceeded:
            return None

    with ThreadPoolExecutor(32) as pool:
        return [s for s in pool.map(one, range(n)) if s is not None]


def billed(app: Inferq, caller: Caller) -> Decimal:
    app.billing.ingest_usage(logged_bodies(app))
    totals = app.ledger.hourly_totals(caller.tenant, datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    return cost_of(totals, app.config)


def remaining_tokens(submitted: Submitted) -> int:
    assert submitted.rate is not None
    (tokens,) = [limit for limit in submitted.rate.limits if limit.name == "tokens"]
    return tokens.remaining


# --- budgets ------------------------------------------------------------------------------------------------
def test_a_burst_of_concurrent_requests_never_spends_more_than_the_budget() -> None:
    app = fake_app()
    rounds = []
    while admitted := burst(app, THRIFTY, 300):
        rounds.append(len(admitted))
        while app.queue.receive(1, 0):
            run_next(app)  # the jobs end (async: nobody waits for them); the next admission settles them
        assert len(rounds) < 100
    # 10 reserved estimates of 1e-6 fit at first; as the jobs settle to their real 1e-7, more fit, never more.
    assert rounds[:3] == [10, 9, 8]
    assert BUDGET - Decimal("0.000001") < billed(app, THRIFTY) <= BUDGET


def test_a_request_whose_estimate_alone_exceeds_what_is_left_is_refused() -> None:
    app = fake_app()
    with pytest.raises(QuotaExceeded) as caught:
        app.gateway.submit(THRIFTY, app.config.deployment(EMBED), {"input": ["a b c"] * 2048})
    assert "less than this request's estimated cost of 0.006144" in caught.value.message
    assert app.queue.receive(10, 0) == []
    send(app, THRIFTY, "a b c d e")  # a small one fits


def test_a_request_refused_by_its_check_gives_its_reservation_back() -> None:
    app = fake_app()
    for _ in range(20):  # 20 estimates of 1e-6 would be twice the budget: each is given back
        with pytest.raises(InvalidInput):
            app.gateway.accept(THRIFTY, app.gateway.route(EMBED, None), {"input": ""}, "error")
    assert len(burst(app, THRIFTY, 20)) == 10


# --- token rates ----------------------------------------------------------------------------------------------
def test_an_async_job_is_settled_to_its_real_usage_when_it_ends_in_this_process() -> None:
    app = fake_app(monotonic=Clock())
    first = send(app, METERED, "a b c d e")  # 50 reserved
    assert remaining_tokens(first) == 50
    assert run_next(app).status is JobStatus.SUCCEEDED  # 5 used; nobody waited for it
    assert remaining_tokens(send(app, METERED, "a")) == 100 - 5 - 10


def test_an_async_job_that_ends_in_another_process_is_settled_from_the_store() -> None:
    clock = Clock()
    shared = memory_adapters()
    http = fake_app(monotonic=clock, signals=InProcessJobSignals(), **shared)
    worker = fake_app(signals=InProcessJobSignals(), **shared)  # its job signals never reach the HTTP side
    send(http, METERED, "a b c d e")
    run_next(worker)
    # Read from the store before the refusal it would otherwise be: 90 fit once the 45 unused come back.
    assert remaining_tokens(send(http, METERED, " ".join(["w"] * 9))) == 100 - 5 - 90


def test_a_job_that_ended_without_usage_gives_back_all_it_reserved() -> None:
    app = fake_app(monotonic=Clock())
    job = send(app, METERED, "a b c d e").job
    app.gateway.cancel(METERED, job.id)
    assert remaining_tokens(send(app, METERED, "a")) == 90


# --- idempotent repeats -------------------------------------------------------------------------------------
def test_idempotent_repeats_consume_neither_rate_nor_budget() -> None:
    app = fake_app(monotonic=Clock())
    for caller in (LIMITED, METERED, THRIFTY):  # 2 requests a minute; 100 tokens a minute; 10 estimates
        first = send(app, caller, "a b c d e", key="k")
        repeats = [send(app, caller, "a b c d e", key="k") for _ in range(11)]
        run_next(app)
        repeats += [send(app, caller, "a b c d e", key="k") for _ in range(11)]  # of the finished job, too
        assert {r.job.id for r in repeats} == {first.job.id} and not any(r.created for r in repeats)
    send(app, LIMITED, key="other")  # the second request of the minute is still there
    with pytest.raises(RateLimited):
        send(app, LIMITED)
    assert remaining_tokens(send(app, METERED, "a")) == 100 - 5 - 10  # only the one job's real 5 tokens
    assert len(burst(app, THRIFTY, 20)) == 9  # 1e-6 of the budget spent (once), 9e-6 left: 9 estimates
