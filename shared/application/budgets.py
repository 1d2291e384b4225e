"""Spending limits: a request is admitted only if its estimated cost fits what is left of its tenant's
`monthly_budget` (UTC month); otherwise QuotaExceeded until the next month. Jobs already accepted still run.

What counts against the budget, per process: the ledger's month-to-date cost (cached, re-read at most every
`max_staleness_s`), plus the real costs this process settled until a ledger figure read `ingest_lag_s` after
them shows them (the billing pipeline lags; meanwhile they may count twice: early refusal, never overshoot),
plus the estimates it reserved for jobs still running. Reserving is atomic (one lock), so concurrent
requests in one process can't all take the same remainder. Other instances' reservations are not seen: they
count once their jobs' usage reaches the ledger (see README, "Budgets and rate limits").
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from shared.domain import billing, usage_report
from shared.domain.config import AppConfig
from shared.domain.errors import QuotaExceeded, TransientError
from shared.domain.jobs import utcnow
from shared.domain.ports import UsageLedger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Spent:
    month: datetime
    cost: Decimal
    read_at: float  # monotonic


@dataclass
class _Local:
    """What this process knows that the ledger may not show yet, for one tenant and month."""

    month: datetime
    reserved: Decimal = Decimal(0)  # estimates of admitted jobs not yet settled
    settled: list[tuple[float, Decimal]] = field(default_factory=list)  # (when, monotonic; real cost) of jobs


class BudgetGuard:
    def __init__(
        self,
        ledger: UsageLedger,
        config: AppConfig,
        max_staleness_s: float,
        ingest_lag_s: float = 30.0,
        *,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger, self.config, self.max_staleness_s = ledger, config, max_staleness_s
        self.ingest_lag_s = ingest_lag_s
        self._budgets = {t.name: t.monthly_budget for t in config.tenants if t.monthly_budget is not None}
        self._clock, self._monotonic = clock, monotonic
        self._spent: dict[str, _Spent] = {}
        self._local: dict[str, _Local] = {}
        self._lock = threading.Lock()  # ledger reads
        self._reserve = threading.Lock()  # reservations: check and add in one step

    def budgeted(self, tenant: str) -> bool:
        return tenant in self._budgets

    def check(self, tenant: str) -> None:
        """Raise QuotaExceeded (with seconds to next month) when nothing is left of the tenant's budget."""
        self.reserve(tenant, Decimal(0))

    def reserve(self, tenant: str, cost: Decimal) -> None:
        """Hold `cost` against the tenant's budget, or raise QuotaExceeded (with seconds to next month) when it
        does not fit what is left: nothing left, or a request whose estimate alone exceeds the remainder."""
        budget = self._budgets.get(tenant)
        if budget is None:
            return
        now = self._clock()
        ledger, read_at = self._figure(tenant, now)
        with self._reserve:
            local = self._current(tenant, billing.month_start(now))
            # A settled cost is in any ledger figure read `ingest_lag_s` after it was settled: not counted again.
            local.settled = [(at, c) for at, c in local.settled if read_at < at + self.ingest_lag_s]
            spent = billing.total([ledger, local.reserved, *(c for _, c in local.settled)])
            if spent < budget and spent + cost <= budget:
                local.reserved += cost
                return
        left = max(Decimal(0), budget - spent)
        why = (
            f"reached its monthly budget of {billing.decimal_text(budget)} {self.config.currency}"
            f" (spent or reserved {billing.decimal_text(spent)})"
            if spent >= budget
            else f"has {billing.decimal_text(left)} {self.config.currency} left of its monthly budget, less than"
            f" this request's estimated cost of {billing.decimal_text(cost)}"
        )
        next_month = billing.next_month_start(now)
        if ledger < budget and ledger + cost <= budget:  # what holds it back are jobs in flight or just billed
            retry_s = self.ingest_lag_s + self.max_staleness_s
            when = f"try again in {math.ceil(retry_s)} s, when jobs in flight have ended and been billed"
        else:
            retry_s = (next_month - now).total_seconds()
            when = f"new requests are accepted again from {next_month.isoformat()}"
        raise QuotaExceeded(f"Tenant '{tenant}' {why}; {when}.", retry_after_s=max(1, math.ceil(retry_s)))

    def release(self, tenant: str, reserved: Decimal, actual: Decimal = Decimal(0)) -> None:
        """A reservation ends: its job ended having cost `actual` (0 for a request refused after admission),
        which counts here until the ledger shows it."""
        if tenant not in self._budgets:
            return
        with self._reserve:
            local = self._current(tenant, billing.month_start(self._clock()))
            local.reserved = max(Decimal(0), local.reserved - reserved)
            if actual:
                local.settled.append((self._monotonic(), actual))

    def month_cost(self, tenant: str, now: datetime) -> Decimal:
        return self._figure(tenant, now)[0]

    def _figure(self, tenant: str, now: datetime) -> tuple[Decimal, float]:
        """The ledger's month-to-date cost for the tenant, and when it was read (monotonic)."""
        month = billing.month_start(now)
        cached = self._fresh(tenant, month)
        if cached is not None:
            return cached.cost, cached.read_at
        with self._lock:  # one reader refreshes; the others wait for its answer rather than scan too
            cached = self._fresh(tenant, month)
            if cached is not None:
                return cached.cost, cached.read_at
            read_at = self._monotonic()
            try:
                totals = self.ledger.hourly_totals(tenant, month, billing.next_month_start(now))
            except TransientError as exc:
                # Fail open: an unreadable ledger must not stop every budgeted tenant; the last figure stands.
                log.warning("budget of %s not checked, the ledger is unavailable: %s", tenant, exc)
                last = self._spent.get(tenant)
                if last is not None and last.month == month:
                    return last.cost, last.read_at
                return Decimal(0), -math.inf
            cost = usage_report.cost_of(totals, self.config)
            self._spent[tenant] = _Spent(month, cost, read_at)
            return cost, read_at

    def _current(self, tenant: str, month: datetime) -> _Local:
        local = self._local.get(tenant)
        if local is None or local.month != month:
            # A new month: what was settled belongs to the last one; jobs in flight keep their reservations.
            local = self._local[tenant] = _Local(month, reserved=local.reserved if local else Decimal(0))
        return local

    def _fresh(self, tenant: str, month: datetime) -> _Spent | None:
        cached = self._spent.get(tenant)
        if cached is None or cached.month != month or self._monotonic() - cached.read_at >= self.max_staleness_s:
            return None
        return cached
