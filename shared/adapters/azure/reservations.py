"""Budget reservations on Table storage: one entity per tenant (`PartitionKey` = the tenant, `RowKey` "holds"),
read, changed and replaced only if its ETag is unchanged (If-Match; created only if absent), retried on 412/409
with a short random pause: an instance can't lose another's hold, or both take the same remainder.

This process's threads queue on a per-tenant lock first, so only other instances' writes can make one retry.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.data.tables import UpdateMode

from shared.adapters.azure.connection import CreateOnce
from shared.adapters.azure.errors import translated
from shared.adapters.azure.probe import PING_TIMEOUT_S
from shared.adapters.azure.tables import ping_table, table_key
from shared.domain.budget_holds import TenantHolds
from shared.domain.errors import ConcurrencyConflict, Conflict, NotFound

if TYPE_CHECKING:
    from azure.data.tables import TableClient

ROW = "holds"
_IF_MATCH = MatchConditions.IfNotModified
RETRY_PAUSE_S = 0.02  # × the attempt number, at most: instances that collided retry apart


class AzureBudgetReservations:
    ping_timeout_s = PING_TIMEOUT_S

    def __init__(self, table: TableClient, max_attempts: int = 20) -> None:
        self.table = table
        self.max_attempts = max_attempts
        self._create = CreateOnce(f"table {table.table_name}", table.create_table)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def ping(self) -> None:
        ping_table(self.table, self.ping_timeout_s)

    def update(self, tenant: str, change: Callable[[TenantHolds], TenantHolds | None]) -> bool:
        self._create()
        what = f"budget holds of tenant {tenant}"
        with self._lock(tenant):
            for attempt in range(1, self.max_attempts + 1):
                holds, etag = self._read(tenant, what)
                new = change(holds)
                if new is None:
                    return False
                held, spent = new.to_json()
                entity = {"PartitionKey": table_key(tenant), "RowKey": ROW, "held": held, "spent": spent}
                try:
                    with translated(what):
                        if etag is None:
                            self.table.create_entity(entity)
                        else:
                            self.table.update_entity(entity, UpdateMode.REPLACE, etag=etag, match_condition=_IF_MATCH)
                    return True
                except (ConcurrencyConflict, Conflict):  # another instance wrote first: read it again
                    time.sleep(random.uniform(0, RETRY_PAUSE_S * attempt))
        raise ConcurrencyConflict(f"{what}: too many concurrent updates")

    def _read(self, tenant: str, what: str) -> tuple[TenantHolds, Any]:
        try:
            with translated(what):
                entity = self.table.get_entity(table_key(tenant), ROW)
        except NotFound:
            return TenantHolds(), None
        return TenantHolds.from_json(entity["held"], entity["spent"]), entity.metadata["etag"]

    def _lock(self, tenant: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(tenant, threading.Lock())
