"""Spending limits: a request is admitted only if its estimated cost fits what is left of its tenant's
`monthly_budget` (UTC month); otherwise QuotaExceeded until the next month. Jobs already accepted still run.

What counts against the budget, per process: the ledger's month-to-date cost (cached, re-read at most every
`max_staleness_s`), plus the costs this process settled that the ledger does not show yet (the billing pipeline
lags), plus the estimates it reserved for jobs still running. Reserving is atomic (one lock), so concurrent
requests in one process can't all take the same remainder. Other instances' reservations are not seen: they
count once their jobs' usage reaches the ledger (see README, "Budgets and rate limits").
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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
    settled: Decimal = Decimal(0)  # real costs of settled jobs, until the ledger shows them
    base: Decimal = Decimal(0)  # the ledger's figure when `settled` began to accumulate


class BudgetGuard:
    def __init__(
        self,
        ledger: UsageLedger,
        config: AppConfig,
        max_staleness_s: float,
        *,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger, self.config, self.max_staleness_s = ledger, config, max_staleness_s
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
        ledger = self.month_cost(tenant, now)
        with self._reserve:
            local = self._current(tenant, billing.month_start(now))
            spent = max(ledger, local.base + local.settled) + local.reserved
            if spent < budget and spent + cost <= budget:
                local.reserved += cost
                return
        next_month = billing.next_month_start(now)
        left = max(Decimal(0), budget - spent)
        why = (
            f"reached its monthly budget of {billing.decimal_text(budget)} {self.config.currency}"
            f" (spent or reserved {billing.decimal_text(spent)})"
            if spent >= budget
            else f"has {billing.decimal_text(left)} {self.config.currency} left of its monthly budget, less than"
            f" this request's estimated cost of {billing.decimal_text(cost)}"
        )
        raise QuotaExceeded(
            f"Tenant '{tenant}' {why}; new requests are accepted again from {next_month.isoformat()}.",
            retry_after_s=max(1, math.ceil((next_month - now).total_seconds())),
        )

    def release(self, tenant: str, reserved: Decimal, actual: Decimal = Decimal(0)) -> None:
        """A reservation ends: its job ended having cost `actual` (0 for a request refused after admission),
        which counts here until the ledger shows it."""
        if tenant not in self._budgets:
            return
        with self._reserve:
            local = self._current(tenant, billing.month_start(self._clock()))
            local.reserved = max(Decimal(0), local.reserved - reserved)
            if actual:
                if not local.settled:
                    cached = self._spent.get(tenant)
                    local.base = cached.cost if cached is not None and cached.month == local.month else Decimal(0)
                local.settled += actual

    def month_cost(self, tenant: str, now: datetime) -> Decimal:
        month = billing.month_start(now)
        cached = self._fresh(tenant, month)
        if cached is not None:
            return cached
        with self._lock:  # one reader refreshes; the others wait for its answer rather than scan too
            cached = self._fresh(tenant, month)
            if cached is not None:
                return cached
            try:
                totals = self.ledger.hourly_totals(tenant, month, billing.next_month_start(now))
            except TransientError as exc:
                # Fail open: an unreadable ledger must not stop every budgeted tenant; the last figure stands.
                log.warning("budget of %s not checked, the ledger is unavailable: %s", tenant, exc)
                last = self._spent.get(tenant)
                return last.cost if last is not None and last.month == month else Decimal(0)
            cost = usage_report.cost_of(totals, self.config)
            self._spent[tenant] = _Spent(month, cost, self._monotonic())
            with self._reserve:
                local = self._local.get(tenant)
                if local is not None and local.month == month and cost >= local.base + local.settled:
                    local.settled = local.base = Decimal(0)  # the ledger caught up with what was settled here
            return cost

    def _current(self, tenant: str, month: datetime) -> _Local:
        local = self._local.get(tenant)
        if local is None or local.month != month:
            local = self._local[tenant] = _Local(month, reserved=local.reserved if local else Decimal(0))
        return local

    def _fresh(self, tenant: str, month: datetime) -> Decimal | None:
        cached = self._spent.get(tenant)
        if cached is None or cached.month != month or self._monotonic() - cached.read_at >= self.max_staleness_s:
            return None
        return cached.cost
