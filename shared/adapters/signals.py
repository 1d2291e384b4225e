"""Job signals in process: the worker says a job changed (a chunk written, or the job ended, with the ended job
itself), and the HTTP side's waiting requests wake up, with no store reads while they wait. Finished jobs are
remembered for a while, so a request that starts waiting after its job ended still sees it at once."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from shared.domain.errors import TransientError
from shared.domain.jobs import Job
from shared.domain.ports import JobStore, Signal

log = logging.getLogger(__name__)

# Finished jobs are remembered for a waiter that starts just after its job ended (a fast job): briefly, and not too
# many, since a job carries its result (a large embeddings result is megabytes).
RECENT = 1024
RECENT_S = 30.0


class InProcessJobSignals:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Signal]]]] = {}
        self._ended: OrderedDict[str, tuple[float, Job]] = OrderedDict()
        self._seq: dict[str, int] = {}  # signals so far, per running job: a waiter can't miss one in between

    def notify(self, job_id: str, job: Job | None = None) -> None:
        """Thread-safe: the job produced a chunk (`job` None) or changed state (`job`, as written)."""
        with self._lock:
            if job is not None and job.status.terminal:
                now = time.monotonic()
                self._ended[job_id] = (now, job)
                self._ended.move_to_end(job_id)
                self._seq.pop(job_id, None)
                while self._ended and (
                    len(self._ended) > RECENT or next(iter(self._ended.values()))[0] < now - RECENT_S
                ):
                    self._ended.popitem(last=False)
            else:
                self._seq[job_id] = self._seq.get(job_id, 0) + 1
            waiters = self._waiters.pop(job_id, [])
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future, Signal(job))

    def ended(self, job_id: str) -> Job | None:
        """The job as it ended, when this process saw it end (cancelled by a request here, or run here)."""
        with self._lock:
            found = self._ended.get(job_id)
        return found[1] if found is not None else None

    def mark(self, job_id: str) -> int:
        """How many signals the job has had: take it before reading, pass it to `wait` after."""
        with self._lock:
            return self._seq.get(job_id, 0)

    async def wait(self, job_id: str, timeout_s: float, after: int | None = None) -> Signal | None:
        """The next signal of the job (at once when it has ended, or has had a signal since `mark` returned
        `after`), or None after `timeout_s`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Signal] = loop.create_future()
        with self._lock:
            if job_id in self._ended:
                return Signal(self._ended[job_id][1])
            if after is not None and self._seq.get(job_id, 0) > after:
                return Signal(None)
            self._waiters.setdefault(job_id, []).append((loop, future))
        try:
            return await asyncio.wait_for(future, max(0.0, timeout_s))
        except TimeoutError:
            return None
        finally:
            with self._lock:
                waiting = self._waiters.get(job_id, [])
                if (loop, future) in waiting:
                    waiting.remove((loop, future))
                    if not waiting:
                        del self._waiters[job_id]


def _resolve(future: asyncio.Future[Signal], signal: Signal) -> None:
    if not future.done():
        future.set_result(signal)


class WatchingJobSignals(InProcessJobSignals):
    """Signals in process, plus one watcher per instance for jobs that end in another one (the worker on its own
    instances, on Azure): while requests wait, one thread reads every waited-for job in batched queries
    (`JobStore.get_many`) and signals those that ended. A job is read every `first_s` in its first `window_s`
    (a second) of waiting, then every `then_s`, so storage cost follows the requests waiting, batched, never a
    loop each."""

    def __init__(
        self,
        store: JobStore,
        first_s: float = 0.1,
        then_s: float = 1.0,
        window_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._store = store
        self._first_s, self._then_s, self._window_s = first_s, then_s, window_s
        self._clock = clock
        self._since: dict[str, float] = {}  # job → when a request began waiting for it
        self._due: dict[str, float] = {}  # job → when to read it next
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    async def wait(self, job_id: str, timeout_s: float, after: int | None = None) -> Signal | None:
        with self._lock:
            self._watch_job(job_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="job-watcher", daemon=True)
                self._thread.start()
        self._wake.set()
        try:
            return await super().wait(job_id, timeout_s, after)
        finally:
            with self._lock:
                if job_id not in self._waiters:  # nobody else waits for it: stop watching
                    self._since.pop(job_id, None)
                    self._due.pop(job_id, None)

    def _watch_job(self, job_id: str) -> None:
        """Start watching `job_id` (called holding the lock)."""
        if job_id not in self._since:
            now = self._clock()
            self._since[job_id] = now
            self._due[job_id] = now + self._first_s

    def _watch(self) -> None:
        while True:
            idle = self._round()
            self._wake.wait(None if idle else self._first_s)
            self._wake.clear()

    def _round(self) -> bool:
        """Read the jobs due now in one batch and signal those that ended; True when nobody waits."""
        now = self._clock()
        with self._lock:
            due = [job_id for job_id, at in self._due.items() if at <= now]
            idle = not self._due
            for job_id in due:
                waited = now - self._since[job_id]
                self._due[job_id] = now + (self._first_s if waited < self._window_s else self._then_s)
        if due:
            try:
                jobs = self._store.get_many(due)
            except TransientError as exc:  # the next round tries again; waiting requests time out as usual
                log.warning("job watcher: %s", exc)
                jobs = []
            for job in jobs:
                if job.status.terminal:
                    self.notify(job.id, job)
        return idle
