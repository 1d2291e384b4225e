"""The one service behind every entry point: HTTP routes, the queue worker, the billing consumer and the
local host all call these methods."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared import billing, billing_ingest, metering, usage_report
from shared.auth import Caller, KeyDirectory
from shared.budgets import BudgetGuard
from shared.config import AppConfig, Deployment, RunnerKind
from shared.errors import (
    ConcurrencyConflict,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PermanentJobError,
    TransientError,
)
from shared.jobs import Job, JobError, JobStatus, new_job_id, utcnow
from shared.ports import BlobStore, JobQueue, JobStore, UsageLedger, UsageStream
from shared.runners.pool import RunnerPool
from shared.schemas.messages import JobMessage
from shared.schemas.usage import UsageEvent, usage_event
from shared.settings import Settings
from shared.streams import StreamChunk, delete_chunks, read_chunks
from shared.tasks import TaskOutput, chat, embeddings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submitted:
    job: Job
    created: bool


class InferenceService:
    def __init__(
        self,
        *,
        settings: Settings,
        config: AppConfig,
        queue: JobQueue,
        store: JobStore,
        blobs: BlobStore,
        stream: UsageStream,
        ledger: UsageLedger,
        runners: RunnerPool,
    ) -> None:
        self.settings = settings
        self.config = config
        self.queue = queue
        self.store = store
        self.blobs = blobs
        self.stream = stream
        self.ledger = ledger
        self.runners = runners
        self.keys = KeyDirectory(config)
        self.limits = embeddings.Limits(settings.max_inputs, settings.max_input_chars)
        self.budgets = BudgetGuard(ledger, config, settings.budget_cache_s)

    # --- the HTTP side -------------------------------------------------------------------------------------
    def deployment(self, name: str | None, kind: RunnerKind | None = None) -> Deployment:
        deployment = self.config.deployment(name)
        if kind is not None and deployment.kind is not kind:
            raise InvalidInput(
                f"Model '{deployment.name}' is a {deployment.kind} model, not {kind}.",
                loc=("body", "model"),
                input=name,
            )
        return deployment

    def submit(
        self, caller: Caller, deployment: Deployment, payload: dict[str, Any], idempotency_key: str | None = None
    ) -> Submitted:
        self.budgets.check(caller.tenant)  # every inference route submits: a tenant past its budget stops here
        request_hash = hashlib.sha256(
            json.dumps([deployment.name, payload], sort_keys=True).encode("utf-8")
        ).hexdigest()
        job = Job.new(new_job_id(caller.tenant, idempotency_key), caller.tenant, deployment.name, request_hash)
        body = json.dumps(payload, separators=(",", ":"))
        payload_ref = None
        if len(body.encode("utf-8")) > self.settings.inline_payload_max_bytes:
            payload_ref = f"payloads/{job.id}.json"  # claim-check: the message carries only the reference
            job = job.model_copy(update={"payload_ref": payload_ref})
        try:
            job = self.store.create(job)
        except Conflict:
            existing = self.store.get(job.id)
            if existing is None or existing.tenant != caller.tenant:
                raise
            if existing.request_hash != request_hash:
                raise Conflict("Idempotency-Key was already used with a different request.") from None
            return Submitted(existing, created=False)
        if payload_ref:
            self.blobs.put(payload_ref, body.encode("utf-8"))
        message = JobMessage(
            job_id=job.id,
            tenant=job.tenant,
            deployment=deployment.name,
            payload=None if payload_ref else payload,
            payload_ref=payload_ref,
        )
        try:
            self.queue.send(message.model_dump_json(exclude_none=True))
        except TransientError as exc:
            self._finish(job.id, JobStatus.FAILED, error=JobError(code="EnqueueFailed", message=str(exc)))
            raise
        return Submitted(job, created=True)

    def get_job(self, caller: Caller, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None or job.tenant != caller.tenant:
            raise NotFound(f"Job {job_id} not found.")  # another tenant's job is as absent as a missing one
        return job

    def cancel(self, caller: Caller, job_id: str) -> Job:
        job = self.get_job(caller, job_id)
        if job.status is not JobStatus.QUEUED and not (job.status is JobStatus.RUNNING and self._stoppable(job)):
            raise Conflict(f"Job {job_id} is {job.status}; only a queued job or a generation can be cancelled.")
        return self.store.replace(job.to(JobStatus.CANCELLED))

    def read_stream(self, caller: Caller, job_id: str, start: int) -> tuple[list[StreamChunk], Job]:
        """The job, then the stream chunks from `start` written so far: when the job is terminal, they are all."""
        job = self.get_job(caller, job_id)
        return read_chunks(self.blobs, job_id, start), job

    def end_stream(self, caller: Caller, job_id: str, relayed: int, complete: bool) -> None:
        """The HTTP side is done with a stream: its relayed chunks go; a stream its client left is cancelled
        (the worker notices within a few tokens and bills what it generated)."""
        self.get_job(caller, job_id)
        if not complete:
            self._finish(job_id, JobStatus.CANCELLED)
        delete_chunks(self.blobs, job_id, 0, relayed)

    # --- the worker side -----------------------------------------------------------------------------------
    def process(self, body: str | bytes) -> None:
        """Run one delivered job message. Returns normally when the message is done with (acknowledge it);
        raises when a redelivery may succeed (the host poisons it after maxDequeueCount deliveries)."""
        message = self._parse_message(body)
        if message is None:
            return
        job = self._job_for(message)
        if job is None or job.status.terminal:
            return  # a redelivery of a finished job changes nothing
        try:
            deployment = self.config.deployment(message.deployment)
        except NotFound as exc:
            self._finish(job.id, JobStatus.FAILED, error=JobError(code="NotFound", message=exc.message))
            return
        if (utcnow() - job.created_at).total_seconds() > self.settings.job_ttl_s:
            self._finish(job.id, JobStatus.EXPIRED, error=JobError(code="Expired", message="job expired in queue"))
            return
        job = self.store.replace(job.to(JobStatus.RUNNING, attempts=job.attempts + 1))
        try:
            payload = message.payload if message.payload is not None else self._claim(message)
            output = self._execute(job, deployment, payload)
        except (PermanentJobError, InvalidInput) as exc:
            self._finish(job.id, JobStatus.FAILED, error=JobError(code=exc.code, message=exc.message))
            return
        except Exception as exc:
            self._note_attempt_error(job.id, f"{type(exc).__name__}: {exc}")
            raise
        events = tuple(  # a task that was stopped mid-way reports the work it did, billed all the same
            usage_event(
                job_id=job.id,
                tenant=job.tenant,
                endpoint=deployment.name,
                deployment=deployment.name,
                model=deployment.model_name,
                meter=meter,
                tokens=tokens,
                time=utcnow(),
            )
            for meter, tokens in output.usage.items()
        )
        done = self._finish(
            job.id, output.status, result=output.result, error=output.error, usage=events, usage_published=not events
        )
        if done is None and events:
            done = self._record_usage(job.id, events)  # cancelled while it ran: bill the work done, once
        if done is not None and done.usage:
            self._publish(done)

    def fail_poisoned(self, body: str | bytes) -> None:
        """A message moved to the poison queue: fail its job, keeping the last reason."""
        message = self._parse_message(body)
        if message is None:
            return
        job = self.store.get(message.job_id)
        if job is None or job.status.terminal:
            return
        reason = f"Failed after {self.settings.max_dequeue_count} deliveries; last error: {job.last_error or 'unknown'}"
        self._finish(job.id, JobStatus.FAILED, error=JobError(code="PoisonMessage", message=reason))

    def publish_pending_usage(self, limit: int = 100) -> int:
        """Publish usage kept with jobs whose first publish failed (Invariant 7). Returns jobs published."""
        published = 0
        for job in self.store.unpublished_usage(limit):
            try:
                self._publish(job, raise_errors=True)
            except TransientError:
                break
            published += 1
        return published

    # --- the billing side ----------------------------------------------------------------------------------
    def ingest_usage(self, bodies: Sequence[str | bytes]) -> billing_ingest.BatchOutcome:
        s = self.settings
        return billing_ingest.ingest(self.ledger, self.blobs, bodies, s.usage_ingest_attempts, s.usage_ingest_backoff_s)

    def replay_kept_usage(self) -> billing_ingest.ReplayOutcome:
        """Bill the usage batches the consumer kept while the ledger was unavailable."""
        return billing_ingest.replay(self.ledger, self.blobs)

    def usage_report(
        self, caller: Caller, start: str | None, end: str | None, granularity: str, tenant: str | None = None
    ) -> usage_report.UsageReport:
        period = usage_report.parse_granularity(granularity)
        since, until = usage_report.parse_range(start, end, utcnow())
        name = self._usage_tenant(caller, tenant, all_allowed=False)
        assert name is not None
        totals = self.ledger.hourly_totals(name, since, until)
        return usage_report.build(totals, self.config, name, since, until, period)

    def metering_records(
        self, caller: Caller, start: str | None, end: str | None, tenant: str | None = None
    ) -> list[dict[str, Any]]:
        """Closed hours only (up to the start of the current one): an exported hour's quantity is final but
        for late events, which a re-export carries under the same record id."""
        now = utcnow()
        since, until = usage_report.parse_range(start, end, now)
        until = min(until, billing.hour_of(now))
        name = self._usage_tenant(caller, tenant, all_allowed=True)
        return metering.records(self.ledger.hourly_totals(name, since, until) if since < until else [], self.config)

    def _usage_tenant(self, caller: Caller, requested: str | None, all_allowed: bool) -> str | None:
        """Whose usage the caller may read: its own; an admin key any tenant (all of them, where allowed)."""
        if requested is None or requested == caller.tenant:
            if caller.tenant:
                return caller.tenant
            if all_allowed:
                return None
            raise InvalidInput("An admin key must name the tenant.", loc=("query", "tenant"), input=None)
        if not caller.is_admin:
            raise Forbidden("Only an admin key may read another tenant's usage.")
        return self.config.tenant(requested).name

    # --- internals -----------------------------------------------------------------------------------------
    def _execute(self, job: Job, deployment: Deployment, payload: dict[str, Any]) -> TaskOutput:
        if deployment.kind is RunnerKind.EMBEDDINGS:
            return embeddings.execute(job.id, payload, deployment, self.limits, self.runners.predictor(deployment))
        if deployment.kind is RunnerKind.CHAT:
            runner = self.runners.generator(deployment)
            return chat.execute(job, payload, deployment, runner, self.blobs, lambda: self._stopped(job.id))
        raise PermanentJobError(f"Runner kind {deployment.kind} is not supported.")

    def _parse_message(self, body: str | bytes) -> JobMessage | None:
        try:
            return JobMessage.model_validate_json(body)
        except ValidationError as exc:
            job_id = _job_id_of(body)
            if job_id and (job := self.store.get(job_id)) and not job.status.terminal:
                self._finish(
                    job_id,
                    JobStatus.FAILED,
                    error=JobError(code="InvalidMessage", message=f"invalid queue message: {exc}"),
                )
            log.error("dropping an invalid queue message (job %s): %s", job_id, exc)
            return None

    def _job_for(self, message: JobMessage) -> Job | None:
        job = self.store.get(message.job_id)
        if job is not None:
            return job
        # A producer that writes to the queue directly: the job comes into being with its message.
        if message.tenant not in {t.name for t in self.config.tenants}:
            log.error("dropping message %s for unknown tenant %r", message.job_id, message.tenant)
            return None
        try:
            return self.store.create(Job.new(message.job_id, message.tenant, message.deployment))
        except Conflict:
            return self.store.get(message.job_id)

    def _claim(self, message: JobMessage) -> dict[str, Any]:
        assert message.payload_ref is not None
        try:
            data = json.loads(self.blobs.get(message.payload_ref))
        except NotFound as exc:
            raise PermanentJobError(f"payload {message.payload_ref} is missing") from exc
        except ValueError as exc:
            raise PermanentJobError(f"payload {message.payload_ref} is not JSON") from exc
        if not isinstance(data, dict):
            raise PermanentJobError(f"payload {message.payload_ref} is not a JSON object")
        return data

    def _finish(self, job_id: str, status: JobStatus, **changes: Any) -> Job | None:
        """Move a job to a terminal state unless it already has one; None when it had."""
        for _ in range(5):
            job = self.store.get(job_id)
            if job is None or job.status.terminal:
                return None
            try:
                done = self.store.replace(job.to(status, **changes))
            except ConcurrencyConflict:
                continue
            if done.payload_ref:
                self.blobs.delete(done.payload_ref)
            return done
        raise ConcurrencyConflict(f"job {job_id}: too many concurrent updates")

    def _record_usage(self, job_id: str, events: tuple[UsageEvent, ...]) -> Job | None:
        """Usage on a job that reached a terminal state while its work ran; None when it has usage already."""
        for _ in range(5):
            job = self.store.get(job_id)
            if job is None or job.usage or not job.status.terminal:
                return None
            try:
                return self.store.replace(job.with_usage(events))
            except ConcurrencyConflict:
                continue
        raise ConcurrencyConflict(f"job {job_id}: too many concurrent updates")

    def _stoppable(self, job: Job) -> bool:
        """Generation jobs check their status as they go, so a running one can be cancelled."""
        try:
            return self.config.deployment(job.deployment).kind is RunnerKind.CHAT
        except NotFound:
            return False

    def _stopped(self, job_id: str) -> bool:
        job = self.store.get(job_id)
        return job is None or job.status.terminal

    def _note_attempt_error(self, job_id: str, reason: str) -> None:
        try:
            job = self.store.get(job_id)
            if job is not None and not job.status.terminal:
                self.store.replace(job.model_copy(update={"last_error": reason[:2000]}))
        except TransientError:
            log.warning("could not record the error of job %s: %s", job_id, reason)

    def _publish(self, job: Job, raise_errors: bool = False) -> None:
        try:
            self.stream.publish(job.usage)
        except TransientError as exc:
            log.warning("usage of job %s kept for a later publish: %s", job.id, exc)
            if raise_errors:
                raise
            return
        for _ in range(3):
            try:
                self.store.replace(job.model_copy(update={"usage_published": True}))
                return
            except ConcurrencyConflict:
                fresh = self.store.get(job.id)
                if fresh is None or fresh.usage_published:
                    return
                job = fresh


def _job_id_of(body: str | bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    job_id = data.get("job_id") if isinstance(data, dict) else None
    return job_id if isinstance(job_id, str) else None


__all__ = ["InferenceService", "Submitted", "UsageEvent"]
