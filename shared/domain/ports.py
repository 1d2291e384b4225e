"""Ports: what the service needs from the outside world. Adapters live in `shared/adapters/`.

Every adapter raises only domain errors (`shared.domain.errors`); foreign exceptions are translated at the boundary.
Every backend port can be pinged (`Pingable`): the readiness check asks each backend the instance uses.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from shared.domain.budget_holds import TenantHolds
from shared.domain.jobs import Job
from shared.schemas.usage import UsageEvent


@dataclass(frozen=True)
class ReceivedMessage:
    id: str
    body: str
    dequeue_count: int
    receipt: str  # pop receipt: proves this receiver still owns the message


class Pingable(Protocol):
    def ping(self) -> None:
        """Readiness: one cheap call to the backend. Returns when it answers; raises StorageUnavailable when it
        does not answer within a short timeout (seconds, without the adapter's usual retries)."""
        ...


class JobQueue(Pingable, Protocol):
    """Azure Storage Queue semantics: at-least-once, invisible while held, a dequeue count per delivery."""

    name: str

    def send(self, body: str, delay_s: float = 0) -> None:
        """Add a message, invisible for its first `delay_s` (a deferred job)."""
        ...

    def receive(self, max_messages: int, visibility_timeout_s: float) -> list[ReceivedMessage]: ...
    def delete(self, message: ReceivedMessage) -> None: ...
    def release(self, message: ReceivedMessage) -> None:
        """Make the message visible again now (a failed delivery)."""
        ...

    def renew(self, message: ReceivedMessage, visibility_timeout_s: float) -> ReceivedMessage | None:
        """Keep a held message invisible for another `visibility_timeout_s` (what the Functions host does while
        an invocation runs); the message with its new receipt, or None if this receiver no longer holds it."""
        ...


@dataclass(frozen=True)
class UnsentMessage:
    """A job's queue message, kept with the job until it is known to be on the queue."""

    job_id: str
    body: str
    since: datetime  # when it was kept, or last claimed
    version: str  # changes with every claim: a claim with a stale version fails
    request_hash: str  # of the request that kept it: not its job's request, the message is not that job's


class JobStore(Pingable, Protocol):
    def create(self, job: Job, message: str | None = None) -> Job:
        """Store a new job; raises Conflict if the id exists. With `message`, the job's queue message is kept
        as unsent until `sent`, never later than the job (a kill before the send leaves it to be re-sent)."""
        ...

    def sent(self, job_id: str) -> None:
        """The job's message is on the queue: drop its unsent copy (nothing to drop is no error)."""
        ...

    def unsent(self, job_id: str) -> UnsentMessage | None: ...
    def unsent_before(self, before: datetime, limit: int) -> list[UnsentMessage]:
        """Up to `limit` unsent messages kept (or last claimed) before `before`."""
        ...

    def claim(self, message: UnsentMessage) -> bool:
        """Take `message` to send it: True if it was unchanged since read (its `since` is now now, so other
        senders leave it alone for a while), False if someone else claimed or sent it meanwhile."""
        ...

    def get(self, job_id: str) -> Job | None: ...
    def get_many(self, job_ids: Sequence[str]) -> list[Job]:
        """The jobs of those ids that exist, in any order: one round trip per few dozen ids, so one poll can
        watch every request an instance has waiting."""
        ...

    def replace(self, job: Job) -> Job:
        """Write `job` if the stored etag still equals `job.etag`; raises ConcurrencyConflict otherwise."""
        ...

    def unpublished_usage(self, limit: int) -> list[Job]: ...


class BlobStore(Pingable, Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes:
        """Raises NotFound."""
        ...

    def delete(self, key: str) -> None: ...
    def list_keys(self, prefix: str, limit: int) -> list[str]:
        """Up to `limit` keys that start with `prefix`, in key order (kept usage batches are found this way)."""
        ...


@dataclass(frozen=True)
class LoggedEvent:
    partition: int
    offset: int
    body: str
    traceparent: str | None = None  # its application property, as on Event Hubs: the trace that produced it


def partition_for(key: str, partitions: int) -> int:
    """The embedded logs' partitioner: one key (a tenant) always lands in the same partition, as on Event Hubs."""
    return zlib.crc32(key.encode("utf-8")) % partitions


class UsageStream(Pingable, Protocol):
    def publish(self, events: Sequence[UsageEvent]) -> None:
        """Publish, partitioned by tenant; raises StorageUnavailable when the stream can't take them now."""
        ...


class UsageLog(UsageStream, Protocol):
    """An embedded usage stream shaped like Event Hubs: partitions, offsets, consumer-group checkpoints."""

    partitions: int

    def read(self, consumer_group: str, partition: int, max_events: int) -> list[LoggedEvent]: ...
    def checkpoint(self, consumer_group: str, partition: int, offset: int) -> None: ...


@dataclass(frozen=True)
class IngestResult:
    billed: int
    duplicates: int


@dataclass(frozen=True)
class UsageTotal:
    period_start: datetime
    tenant: str
    deployment: str
    meter: str
    tokens: int


class UsageLedger(Pingable, Protocol):
    def ingest(self, events: Sequence[UsageEvent]) -> IngestResult:
        """Dedupe by event id and add to the hourly totals in one atomic step."""
        ...

    def hourly_totals(self, tenant: str | None, start: datetime, end: datetime) -> list[UsageTotal]: ...


@dataclass(frozen=True)
class JobOutcome:
    """How one job ended on its deployment: what the per-deployment view counts."""

    job_id: str
    tenant: str
    endpoint: str
    deployment: str
    mirrored: bool
    status: str  # the terminal status
    error: str | None  # the error code of a job that did not succeed
    finished_at: datetime
    latency_ms: float  # accepted → finished
    usage: Mapping[str, int] = field(default_factory=dict)  # meter → tokens (requests, for the requests meter)


class DeploymentStats(Pingable, Protocol):
    def record(self, outcomes: Sequence[JobOutcome]) -> None:
        """Keep the outcomes, in as few writes as the store allows; recording a job again replaces its earlier
        outcome (a redelivery counts once)."""
        ...

    def outcomes(self, start: datetime, end: datetime) -> list[JobOutcome]:
        """The outcomes of jobs that finished in [start, end)."""
        ...


class BudgetReservations(Pingable, Protocol):
    """Every instance's budget reservations, one `TenantHolds` per tenant (shared/domain/budget_holds.py)."""

    def update(self, tenant: str, change: Callable[[TenantHolds], TenantHolds | None]) -> bool:
        """Read the tenant's holds (empty at first), pass them to `change` and write what it returns, as one
        atomic step: no other update of the tenant lands in between (`change` may be called again when one
        did). True if written; `change` returning None writes nothing."""
        ...


class ModelSource(Protocol):
    def fetch(self, source: str, files: dict[str, str], what: str = "model") -> Path:
        """A local folder holding `files`, each verified against its sha256; `what` (model, code) names them in
        errors."""
        ...

    def manifest(self, source: str, name: str) -> dict[str, str]:
        """The files (name → sha256) a built local folder's manifest lists; ModelNotBuilt while it is not there."""
        ...


@dataclass(frozen=True)
class Signal:
    """A job changed: `job` is the job as written when its state changed, None when it only wrote a chunk."""

    job: Job | None


class JobSignals(Protocol):
    """How a waiting request learns that its job produced chunks or ended, instead of re-reading the store."""

    def notify(self, job_id: str, job: Job | None = None) -> None: ...
    def ended(self, job_id: str) -> Job | None:
        """The job as it ended, if this process has seen it end."""
        ...

    def mark(self, job_id: str) -> int:
        """A token for the signals seen so far: read it before reading the job, pass it to `wait` after."""
        ...

    async def wait(self, job_id: str, timeout_s: float, after: int | None = None) -> Signal | None:
        """The next signal (at once for a job that already ended, or that had one since `mark` gave `after`),
        or None after `timeout_s`."""
        ...
