"""Jobs and their states. Every accepted job reaches exactly one terminal state, never overwritten.

queued ──▶ running ──▶ succeeded | failed | expired | cancelled (a generation its client stopped)
   └──▶ cancelled | failed | expired     (running ──▶ running is a redelivery after a dead worker)
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict

from shared.domain.errors import Conflict
from shared.schemas.usage import UsageEvent


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED})
_ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.EXPIRED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.EXPIRED, JobStatus.CANCELLED}
    ),
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id(tenant: str, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return f"job_{uuid.uuid4().hex}"
    # The same tenant and key always name the same job: a repeat finds it instead of creating another.
    return "job_" + hashlib.sha256(f"{tenant}\x00{idempotency_key}".encode()).hexdigest()[:32]


class JobError(BaseModel):
    model_config = ConfigDict(frozen=True)
    code: str
    message: str


class Job(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    tenant: str
    deployment: str
    endpoint: str = ""  # what the client named; "" on jobs from before endpoints (their deployment's name)
    mirrored: bool = False  # a copy of a request for a mirror deployment: never shown to the client, not billed
    status: JobStatus = JobStatus.QUEUED
    created_at: AwareDatetime
    updated_at: AwareDatetime
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    attempts: int = 0
    request_hash: str = ""
    error: JobError | None = None
    last_error: str | None = None
    result: dict[str, Any] | None = None
    usage: tuple[UsageEvent, ...] = ()
    usage_published: bool = True
    payload_ref: str | None = None
    etag: str | None = None  # set by the store; a write with a stale etag is refused

    @classmethod
    def new(
        cls,
        job_id: str,
        tenant: str,
        deployment: str,
        request_hash: str = "",
        *,
        endpoint: str = "",
        mirrored: bool = False,
    ) -> Job:
        now = utcnow()
        return cls(
            id=job_id,
            tenant=tenant,
            deployment=deployment,
            endpoint=endpoint or deployment,
            mirrored=mirrored,
            created_at=now,
            updated_at=now,
            request_hash=request_hash,
        )

    def to(self, status: JobStatus, **changes: Any) -> Job:
        """The job moved to `status`; raises Conflict when the move is not allowed (terminal stays terminal)."""
        if status not in _ALLOWED.get(self.status, frozenset()):
            raise Conflict(f"Job {self.id} is {self.status}; it can't become {status}.")
        now = utcnow()
        stamps: dict[str, Any] = {"updated_at": now}
        if status is JobStatus.RUNNING:
            stamps["started_at"] = now
        if status.terminal:
            stamps["finished_at"] = now
        return self.model_copy(update={"status": status, **stamps, **changes})

    def with_usage(self, usage: tuple[UsageEvent, ...]) -> Job:
        """The usage of work done while the job was stopped (a generation cancelled mid-way): recorded on the
        terminal job, whose state stays; only once, so the job is billed once."""
        if not self.status.terminal:
            raise Conflict(f"Job {self.id} is {self.status}; usage is recorded as it finishes.")
        if self.usage:
            raise Conflict(f"Job {self.id} already has its usage.")
        return self.model_copy(update={"usage": usage, "usage_published": not usage, "updated_at": utcnow()})
