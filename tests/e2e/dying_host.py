"""The local host, killed (SIGKILL, by itself) as it sends the message of the Nth job it recorded: the create→send
window hit exactly. A job with its payload inline is written with its message in one SQLite commit: the kill lands
inside it, after both rows are written, before the commit. A claim-checked one is stored, then sent: the kill lands
after the job is stored, before its message is on the queue. `SOAK_DIE_ON_SEND=N python -m tests.e2e.dying_host`;
the kill is injected at the adapters (store, queue), nothing in the product knows of it."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading

from functions.local.host import main
from shared.adapters.sqlite.jobs import SqliteJobStore
from shared.adapters.sqlite.queue import SqliteJobQueue
from shared.domain.jobs import Job


def die_on_send(n: int) -> None:
    """The Nth send of a job's message as the job is recorded (what the gateway does; the worker's deferrals and
    the timer's re-sends record no job) kills the process."""
    create, create_queued = SqliteJobStore.create, SqliteJobStore.create_queued
    send, insert = SqliteJobQueue.send, SqliteJobQueue.insert
    lock, created, sends = threading.Lock(), threading.local(), [0]

    def nth_send() -> None:
        with lock:
            sends[0] += 1
            if sends[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)

    def creating(self: SqliteJobStore, job: Job, message: str | None = None) -> Job:
        stored = create(self, job, message)
        created.message = message
        return stored

    def dying(self: SqliteJobQueue, body: str, delay_s: float = 0) -> None:
        if getattr(created, "message", None) == body:
            created.message = None
            nth_send()
        send(self, body, delay_s)

    def creating_queued(self: SqliteJobStore, queue: SqliteJobQueue, job: Job, message: str) -> Job:
        created.inside = True
        try:
            return create_queued(self, queue, job, message)
        finally:
            created.inside = False

    def dying_inside(self: SqliteJobQueue, conn: sqlite3.Connection, body: str, delay_s: float = 0) -> None:
        insert(self, conn, body, delay_s)  # both rows written, the commit not yet made
        if getattr(created, "inside", False):
            nth_send()

    SqliteJobStore.create = creating  # type: ignore[method-assign]
    SqliteJobQueue.send = dying  # type: ignore[method-assign]
    SqliteJobStore.create_queued = creating_queued  # type: ignore[method-assign]
    SqliteJobQueue.insert = dying_inside  # type: ignore[method-assign]


if __name__ == "__main__":
    die_on_send(int(os.environ["SOAK_DIE_ON_SEND"]))
    raise SystemExit(main())
