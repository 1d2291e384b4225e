"""Job updates as one unit of work: read the job, apply a change, write it if nobody wrote in between, and try
again on a lost race. The only place that owns the optimistic retry (cosmic's `unit_of_work.py`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from shared.domain.errors import ConcurrencyConflict, TransientError
from shared.domain.jobs import Job, JobError, JobStatus
from shared.domain.ports import BlobStore, JobSignals, JobStore
from shared.schemas.usage import UsageEvent

ATTEMPTS = 5
log = logging.getLogger(__name__)


class JobUpdates:
    def __init__(self, store: JobStore, blobs: BlobStore, signals: JobSignals) -> None:
        self.store = store
        self.blobs = blobs
        self.signals = signals

    def update(self, job_id: str, change: Callable[[Job], Job | None], current: Job | None = None) -> Job | None:
        """The job as `change` left it, written; None when the job is missing or `change` returns None (no
        change). `current`, the job as last written by this caller, saves the first read when nobody wrote
        since. Raises ConcurrencyConflict (transient) after ATTEMPTS lost races."""
        job = current
        for _ in range(ATTEMPTS):
            if job is None:
                job = self.store.get(job_id)
            changed = change(job) if job is not None else None
            if changed is None:
                return None
            try:
                return self.store.replace(changed)
            except ConcurrencyConflict:
                job = None
        raise ConcurrencyConflict(f"job {job_id}: too many concurrent updates")

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        *,
        result: dict[str, Any] | None = None,
        error: JobError | None = None,
        usage: tuple[UsageEvent, ...] = (),
        usage_published: bool = False,
        current: Job | None = None,
    ) -> Job | None:
        """Move a job to a terminal state unless it already has one; None when it had. Whoever waits for it is
        told; its claim-checked payload goes: nobody will run it again."""

        def end(job: Job) -> Job | None:
            if job.status.terminal:
                return None
            return job.to(status, result=result, error=error, usage=usage, usage_published=usage_published)

        done = self.update(job_id, end, current)
        if done is not None:
            self.signals.notify(job_id, done)
            if done.payload_ref:
                self.blobs.delete(done.payload_ref)
        return done

    def fail(self, job_id: str, code: str, message: str) -> Job | None:
        return self.finish(job_id, JobStatus.FAILED, error=JobError(code=code, message=message))

    def note_error(self, job_id: str, reason: str) -> None:
        """Best effort: the reason a delivery failed, for the poison message's record."""
        try:
            self.update(job_id, lambda job: None if job.status.terminal else job.noting(reason))
        except TransientError:
            log.warning("could not record the error of job %s: %s", job_id, reason)
