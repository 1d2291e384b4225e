"""Budget reservations in SQLite (the embedded `BudgetReservations`): one row per tenant, read and written in one
BEGIN IMMEDIATE transaction, which takes the database's write lock: processes sharing the data dir (several
local hosts, say) update a tenant one at a time."""

from __future__ import annotations

from collections.abc import Callable

from shared.adapters.sqlite.db import SqliteDatabase
from shared.domain.budget_holds import TenantHolds


class SqliteBudgetReservations:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        with db.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS budget_holds (tenant TEXT PRIMARY KEY, held TEXT NOT NULL,"
                " spent TEXT NOT NULL)"
            )

    def ping(self) -> None:
        self.db.ping("budget_holds")

    def update(self, tenant: str, change: Callable[[TenantHolds], TenantHolds | None]) -> bool:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT held, spent FROM budget_holds WHERE tenant = ?", (tenant,)).fetchone()
            new = change(TenantHolds.from_json(*row) if row else TenantHolds())
            if new is None:
                return False
            conn.execute(
                "INSERT INTO budget_holds VALUES (?, ?, ?) ON CONFLICT (tenant)"
                " DO UPDATE SET held = excluded.held, spent = excluded.spent",
                (tenant, *new.to_json()),
            )
            return True
