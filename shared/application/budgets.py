"""Spending limits: a request is admitted only if its estimated cost fits what is left of its tenant's
`monthly_budget` (UTC month); otherwise QuotaExceeded until the next month. Jobs already accepted still run.

What counts against the budget: the ledger's month-to-date cost (cached per process, re-read at most every
`max_staleness_s`), plus what every instance holds in the shared `BudgetReservations`: the estimates reserved for
jobs in flight (each lapses `hold_s` after its admission, so a dead instance's holds don't count forever), and
the real costs of jobs that ended, until a ledger figure read `ingest_lag_s` after them shows them (the billing
pipeline lags; meanwhile they may count twice: early refusal, never overshoot). Checking and reserving is one
atomic update of the tenant's holds, so concurrent requests, on any instances, can't all take the same remainder.
Tenants without a budget never touch the reservations.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from shared.domain import billing, usage_report
from shared.domain.budget_holds import TenantHolds, bucket
from shared.domain.config import AppConfig
from shared.domain.errors import QuotaExceeded, TransientError
from shared.domain.jobs import utcnow
from shared.domain.ports import BudgetReservations, UsageLedger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Spent:
    month: datetime
    cost: Decimal
    read_at: float  # monotonic: how stale it is
    read_wall: datetime  # the wall clock then: what other instances settled before it minus the lag is in it


NEVER = datetime.min.replace(tzinfo=UTC)  # no ledger figure could be read: it includes nothing


class BudgetGuard:
    def __init__(
        self,
        ledger: UsageLedger,
        reservations: BudgetReservations,
        config: AppConfig,
        max_staleness_s: float,
        ingest_lag_s: float = 30.0,
        hold_s: float = 900.0,
        *,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger, self.reservations, self.config = ledger, reservations, config
        self.max_staleness_s, self.ingest_lag_s, self.hold_s = max_staleness_s, ingest_lag_s, hold_s
        self._budgets = {t.name: t.monthly_budget for t in config.tenants if t.monthly_budget is not None}
        self._clock, self._monotonic = clock, monotonic
        self._spent: dict[str, _Spent] = {}
        self._lock = threading.Lock()  # ledger reads
        # Past this, any ledger figure in use was read `ingest_lag_s` after a cost was settled: it shows it.
        self._keep_spent_s = ingest_lag_s + max_staleness_s

    def budgeted(self, tenant: str) -> bool:
        return tenant in self._budgets

    def check(self, tenant: str) -> None:
        """Raise QuotaExceeded (with seconds to next month) when nothing is left of the tenant's budget."""
        self.reserve(tenant, Decimal(0))

    def reserve(self, tenant: str, cost: Decimal) -> int | None:
        """Hold `cost` against the tenant's budget, or raise QuotaExceeded (with seconds to next month) when it
        does not fit what is left: nothing left, or a request whose estimate alone exceeds the remainder. The
        hold's expiry (epoch s) to release it with; None for a tenant without a budget (nothing held)."""
        budget = self._budgets.get(tenant)
        if budget is None:
            return None
        now = self._clock()
        ledger, read_at = self._figure(tenant, now)
        expires = bucket(now + timedelta(seconds=self.hold_s))
        spent = ledger

        def admit(holds: TenantHolds) -> TenantHolds | None:
            nonlocal spent
            holds = holds.pruned(now, self._keep_spent_s)
            spent = billing.total([ledger, holds.counted(now, read_at - timedelta(seconds=self.ingest_lag_s))])
            if cost and spent < budget and spent + cost <= budget:
                return holds.hold(expires, cost)
            return None

        if self.reservations.update(tenant, admit):
            return expires
        if spent < budget and spent + cost <= budget:  # a check (cost 0) that passes
            return expires
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

    def release(self, tenant: str, reserved: Decimal, actual: Decimal = Decimal(0), expires: int | None = None) -> None:
        """A reservation ends: its job ended having cost `actual` (0 for a request refused after admission),
        which counts until the ledger shows it. On a storage error the hold stays until it expires."""
        if tenant not in self._budgets or expires is None or not (reserved or actual):
            return
        now = self._clock()

        def settle(holds: TenantHolds) -> TenantHolds:
            return holds.pruned(now, self._keep_spent_s).settle(expires, reserved, bucket(now), actual)

        try:
            self.reservations.update(tenant, settle)
        except TransientError as exc:
            log.warning("budget hold of %s not released (it lapses by itself): %s", tenant, exc)

    def month_cost(self, tenant: str, now: datetime) -> Decimal:
        return self._figure(tenant, now)[0]

    def _figure(self, tenant: str, now: datetime) -> tuple[Decimal, datetime]:
        """The ledger's month-to-date cost for the tenant, and when it was read (wall clock)."""
        month = billing.month_start(now)
        cached = self._fresh(tenant, month)
        if cached is not None:
            return cached.cost, cached.read_wall
        with self._lock:  # one reader refreshes; the others wait for its answer rather than scan too
            cached = self._fresh(tenant, month)
            if cached is not None:
                return cached.cost, cached.read_wall
            read_at, read_wall = self._monotonic(), self._clock()
            try:
                totals = self.ledger.hourly_totals(tenant, month, billing.next_month_start(now))
            except TransientError as exc:
                # Fail open: an unreadable ledger must not stop every budgeted tenant; the last figure stands.
                log.warning("budget of %s not checked, the ledger is unavailable: %s", tenant, exc)
                last = self._spent.get(tenant)
                if last is not None and last.month == month:
                    return last.cost, last.read_wall
                return Decimal(0), NEVER
            cost = usage_report.cost_of(totals, self.config)
            self._spent[tenant] = _Spent(month, cost, read_at, read_wall)
            return cost, read_wall

    def _fresh(self, tenant: str, month: datetime) -> _Spent | None:
        cached = self._spent.get(tenant)
        if cached is None or cached.month != month or self._monotonic() - cached.read_at >= self.max_staleness_s:
            return None
        return cached
