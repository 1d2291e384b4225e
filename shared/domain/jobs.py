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

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

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
    key_id: str = ""  # the id of the credential that sent it (never the key), which its usage events name
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
    # Not stored: this write marks usage published that an earlier write kept (a store that indexes kept usage,
    # like the Azure outbox, retires its entry then, and only then).
    releases_kept_usage: bool = Field(default=False, exclude=True)

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
        key_id: str = "",
    ) -> Job:
        now = utcnow()
        return cls(
            id=job_id,
            tenant=tenant,
            deployment=deployment,
            endpoint=endpoint or deployment,
            mirrored=mirrored,
            key_id=key_id,
            created_at=now,
            updated_at=now,
            request_hash=request_hash,
        )

    def to(
        self,
        status: JobStatus,
        *,
        result: dict[str, Any] | None = None,
        error: JobError | None = None,
        usage: tuple[UsageEvent, ...] = (),
        usage_published: bool | None = None,
        attempts: int | None = None,
    ) -> Job:
        """The job moved to `status`; raises Conflict when the move is not allowed (terminal stays terminal).
        Usage recorded here is unpublished unless told otherwise."""
        if status not in _ALLOWED.get(self.status, frozenset()):
            raise Conflict(f"Job {self.id} is {self.status}; it can't become {status}.")
        now = utcnow()
        return self.model_copy(
            update={
                "status": status,
                "updated_at": now,
                "started_at": now if status is JobStatus.RUNNING else self.started_at,
                "finished_at": now if status.terminal else self.finished_at,
                "result": result if result is not None else self.result,
                "error": error if error is not None else self.error,
                "usage": usage or self.usage,
                "usage_published": (not usage if usage_published is None else usage_published)
                if usage
                else self.usage_published,
                "attempts": self.attempts if attempts is None else attempts,
            }
        )

    def start(self) -> Job:
        """A delivery of the job's message starts running it (again, after a worker died)."""
        return self.to(JobStatus.RUNNING, attempts=self.attempts + 1)

    def noting(self, reason: str) -> Job:
        """The reason a delivery failed, kept for when the message is poisoned."""
        return self.model_copy(update={"last_error": reason[:2000], "updated_at": utcnow()})

    def published(self) -> Job:
        """Its usage events, kept with it by an earlier write, reached the usage stream."""
        return self.model_copy(update={"usage_published": True, "releases_kept_usage": not self.usage_published})

    def claim_checked(self, payload_ref: str) -> Job:
        """Its payload is in the blob store, not in its message."""
        return self.model_copy(update={"payload_ref": payload_ref})

    def with_usage(self, usage: tuple[UsageEvent, ...]) -> Job:
        """The usage of work done while the job was stopped (a generation cancelled mid-way): recorded on the
        terminal job, whose state stays; only once, so the job is billed once."""
        if not self.status.terminal:
            raise Conflict(f"Job {self.id} is {self.status}; usage is recorded as it finishes.")
        if self.usage:
            raise Conflict(f"Job {self.id} already has its usage.")
        return self.model_copy(update={"usage": usage, "usage_published": not usage, "updated_at": utcnow()})
