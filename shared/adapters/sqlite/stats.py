"""Job outcomes per deployment in SQLite (the embedded `DeploymentStats`): one row per job, keyed by its id so a
redelivered job's outcome replaces the first, indexed by the time it finished."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from shared.adapters.sqlite.db import SqliteDatabase
from shared.domain.deployment_stats import from_record, to_record
from shared.domain.ports import JobOutcome


class SqliteDeploymentStats:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        with db.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS deployment_outcomes (job_id TEXT PRIMARY KEY, finished REAL NOT NULL,"
                " doc TEXT NOT NULL)"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS deployment_outcomes_finished ON deployment_outcomes (finished)")

    def ping(self) -> None:
        self.db.ping("deployment_outcomes")

    def record(self, outcomes: Sequence[JobOutcome]) -> None:
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT INTO deployment_outcomes VALUES (?, ?, ?) ON CONFLICT (job_id)"
                " DO UPDATE SET finished = excluded.finished, doc = excluded.doc",
                [(o.job_id, o.finished_at.timestamp(), json.dumps(to_record(o))) for o in outcomes],
            )

    def outcomes(self, start: datetime, end: datetime) -> list[JobOutcome]:
        with self.db.reading() as conn:
            rows = conn.execute(
                "SELECT doc FROM deployment_outcomes WHERE finished >= ? AND finished < ? ORDER BY finished",
                (start.timestamp(), end.timestamp()),
            ).fetchall()
        return [from_record(json.loads(doc)) for (doc,) in rows]
