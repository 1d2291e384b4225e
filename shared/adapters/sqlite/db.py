"""One way to open the embedded database and run a transaction, with sqlite errors made domain errors."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.domain.errors import StorageUnavailable


class SqliteDatabase:
    """A file shared by the adapters. Each thread keeps its own connection: opening one per operation costs
    a WAL checkpoint on every close, which dominated the pipeline's overhead."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        # Writers in this process queue on a lock rather than in SQLite's busy handler, which sleeps and
        # backs off (milliseconds each) when threads contend for the write lock.
        self._write_lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._use_wal()

    def _use_wal(self, attempts: int = 50) -> None:
        """Readers don't block the writer. Processes that open a new file at once all ask to switch it; SQLite
        answers "database is locked" at once to all but one (its busy handler would deadlock them), so retry."""
        for attempt in range(attempts):
            try:
                self.connection().execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == attempts - 1:
                    raise StorageUnavailable(f"database {self.path} unavailable: {exc}") from exc
                time.sleep(0.01 * (attempt + 1))

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA busy_timeout=30000")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise StorageUnavailable(f"database {self.path} unavailable: {exc}") from exc
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT; anything raised inside rolls the whole step back."""
        conn = self.connection()
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StorageUnavailable(f"database {self.path}: {exc}") from exc

    def ping(self, table: str) -> None:
        """Readiness: read one row of `table`; any sqlite error (a damaged file, a missing table) is an outage."""
        try:
            self.connection().execute(f"SELECT 1 FROM {table} LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"database {self.path}: {exc}") from exc

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads: WAL readers see the last commit and never wait for the writer."""
        try:
            yield self.connection()
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable(f"database {self.path}: {exc}") from exc
