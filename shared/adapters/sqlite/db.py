"""One way to open the embedded database and run a transaction, with sqlite errors made domain errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.errors import StorageUnavailable


class SqliteDatabase:
    """A file shared by the adapters; a connection per operation keeps threads independent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = self.connect()
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # readers don't block the writer
        finally:
            conn.close()

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT; anything raised inside rolls the whole step back."""
        try:
            conn = self.connect()
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"database {self.path} unavailable: {exc}") from exc
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable(f"database {self.path}: {exc}") from exc
        finally:
            conn.close()
