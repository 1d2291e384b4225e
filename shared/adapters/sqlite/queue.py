"""A job queue in SQLite with Azure Storage Queue semantics (visibility timeout, dequeue count, pop receipt)."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from dataclasses import replace

from shared.adapters.sqlite.db import SqliteDatabase
from shared.domain.ports import ReceivedMessage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_messages (
    id TEXT PRIMARY KEY, queue TEXT NOT NULL, body TEXT NOT NULL, inserted_at REAL NOT NULL,
    visible_at REAL NOT NULL, dequeue_count INTEGER NOT NULL DEFAULT 0, receipt TEXT
);
CREATE INDEX IF NOT EXISTS queue_messages_visible ON queue_messages (queue, visible_at);
"""


class SqliteJobQueue:
    def __init__(self, db: SqliteDatabase, name: str) -> None:
        self.db = db
        self.name = name
        # The embedded host's receivers wait on this instead of polling (a message wakes them at once).
        self.sent = threading.Event()
        with db.transaction() as conn:
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                conn.execute(statement)

    def ping(self) -> None:
        self.db.ping("queue_messages")

    def send(self, body: str, delay_s: float = 0) -> None:
        with self.db.transaction() as conn:
            self.insert(conn, body, delay_s)
        self.sent.set()

    def insert(self, conn: sqlite3.Connection, body: str, delay_s: float = 0) -> None:
        """The message, in the caller's transaction on this queue's database: the caller sets `sent` once committed."""
        now = time.time()
        conn.execute(
            "INSERT INTO queue_messages (id, queue, body, inserted_at, visible_at) VALUES (?, ?, ?, ?, ?)",
            (uuid.uuid4().hex, self.name, body, now, now + delay_s),
        )

    def receive(self, max_messages: int, visibility_timeout_s: float) -> list[ReceivedMessage]:
        now = time.time()
        received: list[ReceivedMessage] = []
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT id, body, dequeue_count FROM queue_messages WHERE queue = ? AND visible_at <= ? "
                "ORDER BY visible_at, inserted_at LIMIT ?",
                (self.name, now, max_messages),
            ).fetchall()
            for message_id, body, count in rows:
                receipt = uuid.uuid4().hex
                conn.execute(
                    "UPDATE queue_messages SET visible_at = ?, dequeue_count = ?, receipt = ? WHERE id = ?",
                    (now + visibility_timeout_s, count + 1, receipt, message_id),
                )
                received.append(ReceivedMessage(message_id, body, count + 1, receipt))
        return received

    def delete(self, message: ReceivedMessage) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM queue_messages WHERE id = ? AND receipt = ?", (message.id, message.receipt))

    def release(self, message: ReceivedMessage) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE queue_messages SET visible_at = ? WHERE id = ? AND receipt = ?",
                (time.time(), message.id, message.receipt),
            )

    def renew(self, message: ReceivedMessage, visibility_timeout_s: float) -> ReceivedMessage | None:
        receipt = uuid.uuid4().hex
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE queue_messages SET visible_at = ?, receipt = ? WHERE id = ? AND receipt = ?",
                (time.time() + visibility_timeout_s, receipt, message.id, message.receipt),
            )
        return replace(message, receipt=receipt) if cursor.rowcount == 1 else None

    def count(self) -> int:
        """Messages in the queue, visible or not (for tests and the local host's status)."""
        with self.db.transaction() as conn:
            (n,) = conn.execute("SELECT COUNT(*) FROM queue_messages WHERE queue = ?", (self.name,)).fetchone()
        return int(n)
