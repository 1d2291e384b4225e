"""Spending limits: a tenant whose month-to-date cost reached its `monthly_budget` gets QuotaExceeded until the
next month (UTC). Jobs already accepted still run and are billed; only new requests are refused.

No ledger scan per request: each tenant's month cost is cached and re-read at most every `max_staleness_s`,
so a tenant may overshoot by what it spends in that window (plus usage not yet through the billing pipeline).
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
        self._lock = threading.Lock()

    def check(self, tenant: str) -> None:
        """Raise QuotaExceeded (with seconds to next month) when the tenant's month cost reached its budget."""
        budget = self._budgets.get(tenant)
        if budget is None:
            return
        now = self._clock()
        spent = self.month_cost(tenant, now)
        if spent < budget:
            return
        next_month = billing.next_month_start(now)
        raise QuotaExceeded(
            f"Tenant '{tenant}' reached its monthly budget of {billing.decimal_text(budget)} {self.config.currency}"
            f" (spent {billing.decimal_text(spent)}); new requests are accepted again from {next_month.isoformat()}.",
            retry_after_s=max(1, math.ceil((next_month - now).total_seconds())),
        )

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
            return cost

    def _fresh(self, tenant: str, month: datetime) -> Decimal | None:
        cached = self._spent.get(tenant)
        if cached is None or cached.month != month or self._monotonic() - cached.read_at >= self.max_staleness_s:
            return None
        return cached.cost
