"""The usage ledger in SQLite: event ids and hourly totals change in the same transaction, so a batch is
either billed whole, once, or not at all."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from shared.adapters.sqlite.db import SqliteDatabase
from shared.billing import hour_of
from shared.ports import IngestResult, UsageTotal
from shared.schemas.usage import UsageEvent

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ledger_events (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, deployment TEXT NOT NULL,"
    " meter TEXT NOT NULL, hour TEXT NOT NULL, tokens INTEGER NOT NULL, mirrored INTEGER NOT NULL,"
    " job_id TEXT NOT NULL, time TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_hourly (tenant TEXT NOT NULL, deployment TEXT NOT NULL, meter TEXT NOT NULL,"
    " hour TEXT NOT NULL, tokens INTEGER NOT NULL, PRIMARY KEY (tenant, hour, deployment, meter))",
)


class SqliteUsageLedger:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        with db.transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)

    def ingest(self, events: Sequence[UsageEvent]) -> IngestResult:
        return self.ingest_with(events, before_commit=None)

    def ingest_with(self, events: Sequence[UsageEvent], before_commit: object) -> IngestResult:
        """`before_commit` (tests only) is called inside the transaction, after dedupe, before the totals land."""
        totals: dict[tuple[str, str, str, str], int] = defaultdict(int)
        billed = duplicates = 0
        with self.db.transaction() as conn:
            for e in events:
                hour = hour_of(e.time).isoformat()
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO ledger_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        e.id,
                        e.tenant,
                        e.deployment,
                        e.meter.value,
                        hour,
                        e.tokens,
                        int(e.mirrored),
                        e.job_id,
                        e.time.isoformat(),
                    ),
                )
                if cursor.rowcount == 0:
                    duplicates += 1
                    continue
                if not e.mirrored:
                    billed += 1
                    totals[(e.tenant, hour, e.deployment, e.meter.value)] += e.tokens
            if callable(before_commit):
                before_commit()
            conn.executemany(
                "INSERT INTO ledger_hourly VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, hour, deployment, meter)"
                " DO UPDATE SET tokens = tokens + excluded.tokens",
                [(t, d, m, h, n) for (t, h, d, m), n in totals.items()],
            )
        return IngestResult(billed=billed, duplicates=duplicates)

    def hourly_totals(self, tenant: str | None, start: datetime, end: datetime) -> list[UsageTotal]:
        query = "SELECT tenant, deployment, meter, hour, tokens FROM ledger_hourly WHERE hour >= ? AND hour < ?"
        args: list[str] = [hour_of(start).isoformat(), end.astimezone(UTC).isoformat()]
        if tenant is not None:
            query += " AND tenant = ?"
            args.append(tenant)
        with self.db.transaction() as conn:
            rows = conn.execute(query + " ORDER BY hour, deployment, meter", args).fetchall()
        return list(_totals(rows))


def _totals(rows: list[tuple[str, str, str, str, int]]) -> Iterator[UsageTotal]:
    for tenant, deployment, meter, hour, tokens in rows:
        yield UsageTotal(datetime.fromisoformat(hour), tenant, deployment, meter, tokens)
