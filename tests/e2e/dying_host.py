"""The local host, killed (SIGKILL, by itself) as it sends the message of the Nth job it recorded: after the job
is stored, before its message is on the queue, the create→send window hit exactly. `SOAK_DIE_ON_SEND=N python -m
tests.e2e.dying_host`; the kill is injected at the ports (store, queue), nothing in the product knows of it."""

from __future__ import annotations

import os
import signal
import threading

from functions.local.host import main
from shared.adapters.sqlite.jobs import SqliteJobStore
from shared.adapters.sqlite.queue import SqliteJobQueue
from shared.domain.jobs import Job


def die_on_send(n: int) -> None:
    """The Nth send that follows a job's creation in the same thread (what the gateway does; the worker's deferrals
    and the timer's re-sends create nothing) kills the process before the message is written."""
    create, send = SqliteJobStore.create, SqliteJobQueue.send
    lock, created, sends = threading.Lock(), threading.local(), [0]

    def creating(self: SqliteJobStore, job: Job, message: str | None = None) -> Job:
        stored = create(self, job, message)
        created.message = message
        return stored

    def dying(self: SqliteJobQueue, body: str, delay_s: float = 0) -> None:
        if getattr(created, "message", None) == body:
            created.message = None
            with lock:
                sends[0] += 1
                if sends[0] == n:
                    os.kill(os.getpid(), signal.SIGKILL)
        send(self, body, delay_s)

    SqliteJobStore.create = creating  # type: ignore[method-assign]
    SqliteJobQueue.send = dying  # type: ignore[method-assign]


if __name__ == "__main__":
    die_on_send(int(os.environ["SOAK_DIE_ON_SEND"]))
    raise SystemExit(main())
