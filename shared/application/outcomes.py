"""Job outcomes for the per-deployment view, written in batches: one store write per `flush_s` or `batch` jobs
rather than one per job (on Table storage, one entity-group transaction per hour). Operational figures only: an
instance that dies loses at most its last unflushed second of them, never a job or a bill."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from shared.domain.errors import TransientError
from shared.domain.ports import DeploymentStats, JobOutcome

log = logging.getLogger(__name__)


class OutcomeBuffer:
    def __init__(
        self,
        stats: DeploymentStats,
        flush_s: float,
        batch: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stats = stats
        self.flush_s, self.batch, self._clock = flush_s, batch, clock
        self._pending: list[JobOutcome] = []
        self._oldest = 0.0
        self._lock = threading.Lock()

    def add(self, outcome: JobOutcome) -> None:
        with self._lock:
            if not self._pending:
                self._oldest = self._clock()
            self._pending.append(outcome)
            due = len(self._pending) >= self.batch or self._clock() - self._oldest >= self.flush_s
        if due:
            self.flush()

    def flush(self) -> int:
        """Write what is pending; returns how many. A store that doesn't answer keeps them for the next flush."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return 0
        try:
            self.stats.record(pending)
        except TransientError as exc:  # never a reason to fail or redeliver a job
            log.warning("%d job outcomes not recorded yet: %s", len(pending), exc)
            with self._lock:
                self._pending = pending[-10 * self.batch :] + self._pending  # bounded: figures, not bills
            return 0
        return len(pending)
