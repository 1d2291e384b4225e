"""An append-only usage event log in SQLite, shaped like Event Hubs: partitions by key, offsets, and
per-consumer-group checkpoints. It is the embedded `UsageStream` and the local host's event source."""

from __future__ import annotations

from collections.abc import Sequence

from shared import telemetry
from shared.adapters.sqlite.db import SqliteDatabase
from shared.domain.ports import LoggedEvent, partition_for
from shared.schemas.usage import UsageEvent

__all__ = ["LoggedEvent", "SqliteUsageLog", "partition_for"]


class SqliteUsageLog:
    def __init__(self, db: SqliteDatabase, partitions: int = 4) -> None:
        self.db = db
        self.partitions = partitions
        with db.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS usage_log (partition INTEGER NOT NULL, offset INTEGER NOT NULL,"
                " body TEXT NOT NULL, traceparent TEXT, PRIMARY KEY (partition, offset))"
            )
            columns = {row[1] for row in conn.execute("PRAGMA table_info(usage_log)")}
            if "traceparent" not in columns:  # a log written before events carried their trace
                conn.execute("ALTER TABLE usage_log ADD COLUMN traceparent TEXT")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS usage_checkpoints (consumer_group TEXT NOT NULL,"
                " partition INTEGER NOT NULL, offset INTEGER NOT NULL, PRIMARY KEY (consumer_group, partition))"
            )

    def ping(self) -> None:
        self.db.ping("usage_log")

    def publish(self, events: Sequence[UsageEvent]) -> None:
        """Each event with the current trace context (Event Hubs' `traceparent` application property)."""
        self.append([(e.tenant, e.model_dump_json()) for e in events], telemetry.traceparent())

    def append(self, keyed_bodies: Sequence[tuple[str, str]], traceparent: str | None = None) -> None:
        """Append raw bodies under partition keys (what any producer can write, valid or not)."""
        with self.db.transaction() as conn:
            for key, body in keyed_bodies:
                partition = partition_for(key, self.partitions)
                (last,) = conn.execute(
                    "SELECT COALESCE(MAX(offset), -1) FROM usage_log WHERE partition = ?", (partition,)
                ).fetchone()
                conn.execute(
                    "INSERT INTO usage_log (partition, offset, body, traceparent) VALUES (?, ?, ?, ?)",
                    (partition, last + 1, body, traceparent),
                )

    def read(self, consumer_group: str, partition: int, max_events: int) -> list[LoggedEvent]:
        """Events after the group's checkpoint on that partition, oldest first. A read: it takes no write lock
        (the consumer polls every partition, and the workers append meanwhile)."""
        with self.db.reading() as conn:
            row = conn.execute(
                "SELECT offset FROM usage_checkpoints WHERE consumer_group = ? AND partition = ?",
                (consumer_group, partition),
            ).fetchone()
            start = row[0] + 1 if row else 0
            rows = conn.execute(
                "SELECT offset, body, traceparent FROM usage_log WHERE partition = ? AND offset >= ?"
                " ORDER BY offset LIMIT ?",
                (partition, start, max_events),
            ).fetchall()
        return [LoggedEvent(partition, offset, body, traceparent) for offset, body, traceparent in rows]

    def checkpoint(self, consumer_group: str, partition: int, offset: int) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO usage_checkpoints VALUES (?, ?, ?) ON CONFLICT (consumer_group, partition)"
                " DO UPDATE SET offset = excluded.offset",
                (consumer_group, partition, offset),
            )
