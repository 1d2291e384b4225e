"""Budget reservations in memory (a `BudgetReservations`): each tenant's holds change under one lock, kept as
the same text the SQLite and Table adapters store."""

from __future__ import annotations

import threading
from collections.abc import Callable

from shared.domain.budget_holds import TenantHolds


class MemoryBudgetReservations:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._docs: dict[str, tuple[str, str]] = {}

    def ping(self) -> None:
        """Memory always answers."""

    def update(self, tenant: str, change: Callable[[TenantHolds], TenantHolds | None]) -> bool:
        with self._lock:
            doc = self._docs.get(tenant)
            new = change(TenantHolds.from_json(*doc) if doc else TenantHolds())
            if new is None:
                return False
            self._docs[tenant] = new.to_json()
            return True
