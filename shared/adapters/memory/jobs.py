"""The job store in memory: a JSON document per job, written only if its etag is unchanged (as in SQLite).

Jobs are kept as JSON, not as objects: a caller can't change a stored job by mutating what it got back, and a
job that would not survive a real store's serialisation does not survive this one either.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from shared.domain.errors import ConcurrencyConflict, Conflict
from shared.domain.jobs import Job, utcnow
from shared.domain.ports import UnsentMessage


class MemoryJobStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._docs: dict[str, tuple[str, bool, str]] = {}  # id → (etag, usage_published, doc)
        self._unsent: dict[str, UnsentMessage] = {}

    def ping(self) -> None:
        """Memory always answers."""

    def create(self, job: Job, message: str | None = None) -> Job:
        stored = job.model_copy(update={"etag": uuid.uuid4().hex})
        with self._lock:
            if job.id in self._docs:
                raise Conflict(f"job {job.id} exists")
            self._docs[job.id] = _row(stored)
            if message is not None:
                self._unsent[job.id] = UnsentMessage(job.id, message, utcnow(), uuid.uuid4().hex, job.request_hash)
        return stored

    def sent(self, job_id: str) -> None:
        with self._lock:
            self._unsent.pop(job_id, None)

    def unsent(self, job_id: str) -> UnsentMessage | None:
        with self._lock:
            return self._unsent.get(job_id)

    def unsent_before(self, before: datetime, limit: int) -> list[UnsentMessage]:
        with self._lock:
            return [m for m in self._unsent.values() if m.since < before][: max(limit, 0)]

    def claim(self, message: UnsentMessage) -> bool:
        with self._lock:
            if self._unsent.get(message.job_id) != message:
                return False
            self._unsent[message.job_id] = replace(message, since=utcnow(), version=uuid.uuid4().hex)
        return True

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._docs.get(job_id)
        return Job.model_validate_json(row[2]) if row else None

    def get_many(self, job_ids: Sequence[str]) -> list[Job]:
        return [job for job in map(self.get, job_ids) if job is not None]

    def replace(self, job: Job) -> Job:
        stored = job.model_copy(update={"etag": uuid.uuid4().hex})
        with self._lock:
            row = self._docs.get(job.id)
            if row is None or row[0] != job.etag:
                raise ConcurrencyConflict(f"job {job.id} changed since it was read")
            self._docs[job.id] = _row(stored)
        return stored

    def unpublished_usage(self, limit: int) -> list[Job]:
        with self._lock:
            docs = [doc for _, published, doc in self._docs.values() if not published][: max(limit, 0)]
        return [Job.model_validate_json(doc) for doc in docs]


def _row(job: Job) -> tuple[str, bool, str]:
    assert job.etag is not None
    return job.etag, job.usage_published, job.model_dump_json()
