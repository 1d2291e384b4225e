"""The usage ledger in SQLite: event ids and hourly totals change in the same transaction, so a batch is
either billed whole, once, or not at all.

Set-based, so one batch costs a handful of statements whatever its size: the batch goes into a temp table
(deduplicated within itself, first copy wins), rows whose id the ledger already holds are removed, the rest are
recorded, and their tokens are added to the hourly totals with one GROUP BY upsert.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from shared.adapters.sqlite.db import SqliteDatabase
from shared.domain.billing import EPOCH, HOUR, hour_index
from shared.domain.ports import IngestResult, UsageTotal
from shared.schemas.usage import UsageEvent

# `hour` is the ISO text of the UTC hour ("2024-05-01T13:00:00+00:00"): fixed width, so text order is time order.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ledger_events (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, deployment TEXT NOT NULL,"
    " meter TEXT NOT NULL, hour TEXT NOT NULL, tokens INTEGER NOT NULL, mirrored INTEGER NOT NULL,"
    " job_id TEXT NOT NULL, time TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_hourly (tenant TEXT NOT NULL, deployment TEXT NOT NULL, meter TEXT NOT NULL,"
    " hour TEXT NOT NULL, tokens INTEGER NOT NULL, PRIMARY KEY (tenant, hour, deployment, meter))",
)
_BATCH = (
    "CREATE TEMP TABLE IF NOT EXISTS ledger_batch (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, deployment TEXT NOT NULL,"
    " meter TEXT NOT NULL, hour TEXT NOT NULL, tokens INTEGER NOT NULL, mirrored INTEGER NOT NULL,"
    " job_id TEXT NOT NULL, time TEXT NOT NULL)"
)
_DEDUPE = "DELETE FROM ledger_batch WHERE EXISTS (SELECT 1 FROM main.ledger_events e WHERE e.id = ledger_batch.id)"
_AGGREGATE = (
    "INSERT INTO main.ledger_hourly (tenant, deployment, meter, hour, tokens)"
    " SELECT tenant, deployment, meter, hour, SUM(tokens) FROM ledger_batch WHERE mirrored = 0"
    " GROUP BY tenant, hour, deployment, meter"
    " ON CONFLICT (tenant, hour, deployment, meter) DO UPDATE SET tokens = tokens + excluded.tokens"
)

Row = tuple[str, str, str, str, str, int, int, str, str]


class SqliteUsageLedger:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        with db.transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)

    def ping(self) -> None:
        self.db.ping("ledger_hourly")

    def ingest(self, events: Sequence[UsageEvent]) -> IngestResult:
        return self.ingest_with(events, before_commit=None)

    def ingest_with(self, events: Sequence[UsageEvent], before_commit: Callable[[], None] | None) -> IngestResult:
        """`before_commit` (tests only) runs inside the transaction, after the event ids are recorded and before
        the totals change: whatever it raises rolls both back."""
        if not events:
            return IngestResult(billed=0, duplicates=0)
        rows = _rows(events)
        with self.db.transaction() as conn:
            conn.execute(_BATCH)  # the connection is kept per thread, and its temp table with it
            conn.execute("DELETE FROM temp.ledger_batch")
            conn.executemany("INSERT OR IGNORE INTO ledger_batch VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute(_DEDUPE)
            conn.execute("INSERT INTO main.ledger_events SELECT * FROM ledger_batch")
            if before_commit is not None:
                before_commit()
            conn.execute(_AGGREGATE)
            new, billed = conn.execute("SELECT COUNT(*), COALESCE(SUM(mirrored = 0), 0) FROM ledger_batch").fetchone()
            conn.execute("DELETE FROM temp.ledger_batch")
        return IngestResult(billed=int(billed), duplicates=len(events) - int(new))

    def hourly_totals(self, tenant: str | None, start: datetime, end: datetime) -> list[UsageTotal]:
        """Totals of the hours that start in [hour of `start`, `end`)."""
        query = "SELECT tenant, deployment, meter, hour, tokens FROM ledger_hourly WHERE hour >= ? AND hour < ?"
        # An hour's text sorts before any instant inside it ("…T10:00:00+00:00" < "…T10:00:00.5+00:00"), so
        # `hour < end` keeps exactly the hours that start before `end`.
        args: list[str] = [_hour_text(hour_index(start)), end.astimezone(UTC).isoformat()]
        if tenant is not None:
            query += " AND tenant = ?"
            args.append(tenant)
        with self.db.reading() as conn:
            rows = conn.execute(query + " ORDER BY hour, tenant, deployment, meter", args).fetchall()
        return list(_totals(rows))


def _hour_text(index: int) -> str:
    return (EPOCH + index * HOUR).isoformat()


def _rows(events: Sequence[UsageEvent]) -> list[Row]:
    hours: dict[int, str] = {}  # a batch spans few hours: format each once
    rows: list[Row] = []
    for e in events:
        index = hour_index(e.time)
        hour = hours.get(index)
        if hour is None:
            hour = hours[index] = _hour_text(index)
        rows.append(
            (e.id, e.tenant, e.deployment, e.meter.value, hour, e.tokens, int(e.mirrored), e.job_id, e.time.isoformat())
        )
    return rows


def _totals(rows: list[tuple[str, str, str, str, int]]) -> Iterator[UsageTotal]:
    for tenant, deployment, meter, hour, tokens in rows:
        yield UsageTotal(datetime.fromisoformat(hour).astimezone(UTC), tenant, deployment, meter, tokens)
