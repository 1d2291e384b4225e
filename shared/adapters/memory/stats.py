"""Job outcomes per deployment in memory (a `DeploymentStats`): one record per job id, so a redelivered job's
outcome replaces the first; kept as the same records the SQLite and Table adapters store."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from shared.domain.deployment_stats import from_record, to_record
from shared.domain.ports import JobOutcome


class MemoryDeploymentStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, tuple[datetime, dict[str, Any]]] = {}  # job id → (finished_at, record)

    def ping(self) -> None:
        """Memory always answers."""

    def record(self, outcomes: Sequence[JobOutcome]) -> None:
        with self._lock:
            for outcome in outcomes:
                self._records[outcome.job_id] = (outcome.finished_at, to_record(outcome))

    def outcomes(self, start: datetime, end: datetime) -> list[JobOutcome]:
        with self._lock:
            rows = [(finished, record) for finished, record in self._records.values() if start <= finished < end]
        rows.sort(key=lambda row: row[0])  # stable: equal times keep the order they were first recorded in
        return [from_record(record) for _, record in rows]
