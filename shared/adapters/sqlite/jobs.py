"""The job store in SQLite: a JSON document per job, written only if its etag is unchanged; a job's queue message
is kept in `unsent_messages`, in the transaction that creates the job, until it is known to be on the queue. On
the embedded queue (a table of the same file) the job and its message are written in one transaction instead."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from shared.adapters.sqlite.db import SqliteDatabase
from shared.adapters.sqlite.queue import SqliteJobQueue
from shared.domain.errors import ConcurrencyConflict, Conflict
from shared.domain.jobs import Job, utcnow
from shared.domain.ports import UnsentMessage

UNSENT = "SELECT job_id, body, since, version, request_hash FROM unsent_messages"
CHUNK = 500  # ids per query: well under SQLite's host-parameter limit


class SqliteJobStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        with db.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, status TEXT NOT NULL,"
                " usage_published INTEGER NOT NULL, etag TEXT NOT NULL, doc TEXT NOT NULL)"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS jobs_unpublished ON jobs (usage_published)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS unsent_messages (job_id TEXT PRIMARY KEY, body TEXT NOT NULL,"
                " since REAL NOT NULL, version TEXT NOT NULL, request_hash TEXT NOT NULL)"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS unsent_messages_since ON unsent_messages (since)")

    def ping(self) -> None:
        self.db.ping("jobs")

    def create(self, job: Job, message: str | None = None) -> Job:
        def keep_unsent(conn: sqlite3.Connection) -> None:
            if message is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO unsent_messages VALUES (?, ?, ?, ?, ?)",
                    (job.id, message, utcnow().timestamp(), uuid.uuid4().hex, job.request_hash),
                )

        return self._insert(job, keep_unsent)

    def create_queued(self, queue: SqliteJobQueue, job: Job, message: str) -> Job:
        """The job and its message on `queue` in one transaction: both are there, or neither is (Conflict when
        the id exists), so there is no unsent copy to keep and drop (three commits become one). The caller wakes
        the queue's receivers (the dispatcher's `enqueued`)."""
        if queue.db is not self.db:
            raise ValueError(f"queue {queue.name} is in another database than the job store")
        return self._insert(job, lambda conn: queue.insert(conn, message))

    def _insert(self, job: Job, also: Callable[[sqlite3.Connection], None]) -> Job:
        """The new job's row and whatever `also` writes, in one transaction; Conflict when the id exists."""
        stored = job.model_copy(update={"etag": uuid.uuid4().hex})
        row = self._row(stored)  # serialised before the write lock is taken: every writer waits while it is held
        try:
            with self.db.transaction() as conn:
                conn.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?)", row)
                also(conn)
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"job {job.id} exists") from exc
        return stored

    def sent(self, job_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM unsent_messages WHERE job_id = ?", (job_id,))

    def unsent(self, job_id: str) -> UnsentMessage | None:
        with self.db.reading() as conn:
            row = conn.execute(f"{UNSENT} WHERE job_id = ?", (job_id,)).fetchone()
        return _unsent(row) if row else None

    def unsent_before(self, before: datetime, limit: int) -> list[UnsentMessage]:
        with self.db.reading() as conn:
            rows = conn.execute(
                f"{UNSENT} WHERE since < ? ORDER BY since LIMIT ?",
                (before.timestamp(), max(limit, 0)),
            ).fetchall()
        return [_unsent(row) for row in rows]

    def claim(self, message: UnsentMessage) -> bool:
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE unsent_messages SET since = ?, version = ? WHERE job_id = ? AND version = ?",
                (utcnow().timestamp(), uuid.uuid4().hex, message.job_id, message.version),
            )
            return cursor.rowcount == 1

    def get(self, job_id: str) -> Job | None:
        with self.db.reading() as conn:
            row = conn.execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.model_validate_json(row[0]) if row else None

    def get_many(self, job_ids: Sequence[str]) -> list[Job]:
        found: list[Job] = []
        for start in range(0, len(job_ids), CHUNK):
            chunk = list(job_ids[start : start + CHUNK])
            with self.db.reading() as conn:
                rows = conn.execute(
                    f"SELECT doc FROM jobs WHERE id IN ({', '.join('?' * len(chunk))})", chunk
                ).fetchall()
            found.extend(Job.model_validate_json(doc) for (doc,) in rows)
        return found

    def replace(self, job: Job) -> Job:
        stored = job.model_copy(update={"etag": uuid.uuid4().hex})
        row = self._row(stored)  # serialised (a result may be large) before the write lock is taken
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET tenant = ?, status = ?, usage_published = ?, etag = ?, doc = ? "
                "WHERE id = ? AND etag = ?",
                (*row[1:], job.id, job.etag),
            )
            if cursor.rowcount != 1:
                raise ConcurrencyConflict(f"job {job.id} changed since it was read")
        return stored

    def unpublished_usage(self, limit: int) -> list[Job]:
        with self.db.reading() as conn:
            rows = conn.execute("SELECT doc FROM jobs WHERE usage_published = 0 LIMIT ?", (limit,)).fetchall()
        return [Job.model_validate_json(doc) for (doc,) in rows]

    @staticmethod
    def _row(job: Job) -> tuple[str, str, str, int, str, str]:
        assert job.etag is not None
        return (job.id, job.tenant, job.status.value, int(job.usage_published), job.etag, job.model_dump_json())


def _unsent(row: tuple[str, str, float, str, str]) -> UnsentMessage:
    job_id, body, since, version, request_hash = row
    return UnsentMessage(job_id, body, datetime.fromtimestamp(since, UTC), version, request_hash)
