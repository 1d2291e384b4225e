"""The local host, killed (SIGKILL, by itself) as it sends its Nth job message: after the job is stored, before its
message is on the queue, the create→send window hit exactly. `SOAK_DIE_ON_SEND=N python -m tests.e2e.dying_host`;
the kill is injected at the queue port, nothing in the product knows of it."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from functions.local.host import main
from shared.adapters.sqlite.queue import SqliteJobQueue
from shared.bindings import JOB_QUEUE


def die_on_send(n: int) -> None:
    send = SqliteJobQueue.send
    lock, sends = threading.Lock(), [0]

    def dying(self: SqliteJobQueue, body: str, *args: Any, **kwargs: Any) -> None:
        if self.name == JOB_QUEUE:
            with lock:
                sends[0] += 1
                if sends[0] == n:
                    os.kill(os.getpid(), signal.SIGKILL)
        send(self, body, *args, **kwargs)

    SqliteJobQueue.send = dying  # type: ignore[method-assign]


if __name__ == "__main__":
    die_on_send(int(os.environ["SOAK_DIE_ON_SEND"]))
    raise SystemExit(main())
