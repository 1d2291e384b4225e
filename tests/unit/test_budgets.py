"""Spending limits: refused once the month's cost reaches the budget, with Retry-After to next month, read from
a cache with bounded staleness; reservations held in the shared count until released, or until they lapse."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from shared.adapters.memory import MemoryBudgetReservations
from shared.application.budgets import BudgetGuard
from shared.domain.errors import QuotaExceeded, StorageUnavailable
from tests.conftest import ledger_event
from tests.unit.billing_fakes import CONFIG, FlakyUsageLedger

NOW = datetime(2024, 2, 29, 23, 59, 30, tzinfo=UTC)  # 30 s before March


class Clocks:
    def __init__(self) -> None:
        self.now, self.mono = NOW, 1000.0

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


def spend(ledger: FlakyUsageLedger, tenant: str, tokens: int, when: datetime = NOW) -> None:
    """At 0.0005 per 1K input tokens on "chat": 2,000,000 tokens cost 1.00."""
    ledger.ingest([ledger_event(f"job-{ledger.ingests}", tenant, tokens, when, deployment="chat", model="c")])


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def ledger() -> FlakyUsageLedger:
    return FlakyUsageLedger()


@pytest.fixture
def guard(ledger: FlakyUsageLedger, clocks: Clocks) -> BudgetGuard:
    return BudgetGuard(
        ledger, MemoryBudgetReservations(), CONFIG, 10, clock=lambda: clocks.now, monotonic=lambda: clocks.mono
    )


def test_a_tenant_at_its_budget_is_refused_until_next_month(guard: BudgetGuard, ledger: FlakyUsageLedger) -> None:
    spend(ledger, "acme", 1_999_999)
    guard.check("acme")  # 0.9999995 < 1.00
    spend(ledger, "acme", 1)
    guard.check("acme")  # cached: at most 10 s stale
    guard.check("globex")  # no budget, never refused
    assert ledger.reads == 1


def test_reaching_the_budget_refuses_with_seconds_to_next_month(
    guard: BudgetGuard, ledger: FlakyUsageLedger, clocks: Clocks
) -> None:
    spend(ledger, "acme", 2_000_000)  # exactly 1.00: reached
    spend(ledger, "globex", 10**9)
    with pytest.raises(QuotaExceeded) as caught:
        guard.check("acme")
    assert caught.value.code == "OutOfQuota" and caught.value.retry_after_s == 30
    assert "monthly budget of 1 EUR" in caught.value.message
    guard.check("globex")


def test_the_cache_is_re_read_after_its_staleness_bound(
    guard: BudgetGuard, ledger: FlakyUsageLedger, clocks: Clocks
) -> None:
    guard.check("acme")
    spend(ledger, "acme", 2_000_000)
    clocks.mono += 9.9
    guard.check("acme")
    clocks.mono += 0.1
    with pytest.raises(QuotaExceeded):
        guard.check("acme")
    assert ledger.reads == 2


def test_a_new_month_starts_from_zero(guard: BudgetGuard, ledger: FlakyUsageLedger, clocks: Clocks) -> None:
    spend(ledger, "acme", 2_000_000)
    with pytest.raises(QuotaExceeded):
        guard.check("acme")
    clocks.now += timedelta(seconds=30)  # March 1st, 00:00:00: the cached February figure no longer applies
    guard.check("acme")
    spend(ledger, "acme", 3_000_000, when=clocks.now)
    clocks.mono += 10
    with pytest.raises(QuotaExceeded) as caught:
        guard.check("acme")
    assert caught.value.retry_after_s == 31 * 24 * 3600


def test_an_unreadable_ledger_fails_open_with_the_last_figure(
    guard: BudgetGuard, ledger: FlakyUsageLedger, clocks: Clocks
) -> None:
    guard.check("acme")
    clocks.mono += 60
    ledger.failures = [StorageUnavailable("down")]
    guard.check("acme")  # the last figure (0) stands rather than refusing every request
    spend(ledger, "acme", 2_000_000)
    with pytest.raises(QuotaExceeded):
        guard.check("acme")


def test_reservations_count_until_released_and_settled_costs_until_the_ledger_shows_them(
    guard: BudgetGuard, ledger: FlakyUsageLedger, clocks: Clocks
) -> None:
    first = guard.reserve("acme", Decimal("0.6"))
    with pytest.raises(QuotaExceeded, match="has 0.4 EUR left of its monthly budget, less than this request's"):
        guard.reserve("acme", Decimal("0.5"))
    second = guard.reserve("acme", Decimal("0.4"))  # exactly what is left
    with pytest.raises(QuotaExceeded, match="reached its monthly budget"):
        guard.reserve("acme", Decimal(0))
    guard.release("acme", Decimal("0.6"), actual=Decimal("0.2"), expires=first)  # its job ended, costing 0.2
    guard.release("acme", Decimal("0.4"), expires=second)  # refused by its check: nothing spent
    with pytest.raises(QuotaExceeded):
        guard.reserve("acme", Decimal("0.81"))  # the 0.2 counts while the ledger does not show it yet
    spend(ledger, "acme", 400_000)  # now it does (0.2)
    clocks.advance(10)
    with pytest.raises(QuotaExceeded) as early:  # read sooner than the ingest lag after it: it may count twice
        guard.reserve("acme", Decimal("0.8"))
    assert early.value.retry_after_s == 30 + 10 and "try again in 40 s" in early.value.message
    clocks.advance(30)
    guard.reserve("acme", Decimal("0.8"))  # a figure read 30 s after it was settled: counted once
    guard.reserve("globex", Decimal(10**6))  # no budget: nothing held


def test_a_cost_the_ledger_showed_before_it_was_settled_is_not_counted_twice_for_long(
    guard: BudgetGuard, ledger: FlakyUsageLedger, clocks: Clocks
) -> None:
    held = guard.reserve("acme", Decimal("0.5"))
    spend(ledger, "acme", 1_000_000)  # its job's 0.5 is billed and read...
    clocks.advance(10)
    assert guard.month_cost("acme", clocks.now) == Decimal("0.5")
    guard.release("acme", Decimal("0.5"), actual=Decimal("0.5"), expires=held)  # ...before this process settles it
    with pytest.raises(QuotaExceeded):
        guard.reserve("acme", Decimal("0.5"))  # counted twice for now
    clocks.advance(40)
    guard.reserve("acme", Decimal("0.5"))  # not for the rest of the month


def test_a_hold_never_released_lapses_after_the_hold_time(
    guard: BudgetGuard, ledger: FlakyUsageLedger, clocks: Clocks
) -> None:
    guard.reserve("acme", Decimal("0.9"))  # its process dies: nobody releases it
    clocks.advance(guard.hold_s - 1)  # (into March: a hold carries over)
    with pytest.raises(QuotaExceeded):
        guard.reserve("acme", Decimal("0.5"))  # held INFERQ_BUDGET_HOLD_S (rounded up to a 10 s bucket)
    clocks.advance(1)
    guard.reserve("acme", Decimal("0.5"))


def test_settled_costs_of_the_last_month_do_not_count_in_the_new_one_but_holds_carry_over(
    guard: BudgetGuard, ledger: FlakyUsageLedger, clocks: Clocks
) -> None:
    job = guard.reserve("acme", Decimal("0.3"))
    done = guard.reserve("acme", Decimal("0.6"))
    guard.release("acme", Decimal("0.6"), actual=Decimal("0.6"), expires=done)
    clocks.advance(30)  # March: the 0.6 was February's; the 0.3 is still in flight
    guard.reserve("acme", Decimal("0.7"))
    with pytest.raises(QuotaExceeded):
        guard.reserve("acme", Decimal("0.01"))
    assert job is not None
