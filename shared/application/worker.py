"""The worker side of the service: run a delivered job on its deployment, fail a poisoned one, publish usage
kept for later, and record each job's outcome for the per-deployment view. A base class of `InferenceService`
(one object behind every entry point), kept in its own module to keep each half small."""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import ValidationError

from shared.domain import deployment_stats
from shared.domain.config import AppConfig, Deployment, RunnerKind
from shared.domain.errors import (
    ConcurrencyConflict,
    ConfigError,
    Conflict,
    InvalidInput,
    NotFound,
    PermanentJobError,
    TransientError,
)
from shared.domain.jobs import Job, JobError, JobStatus, utcnow
from shared.domain.ports import BlobStore, DeploymentStats, JobStore, UsageStream
from shared.domain.routing import Router
from shared.runtimes import chat, embeddings, score
from shared.runtimes.base import TaskOutput
from shared.runtimes.registry import RunnerPool
from shared.schemas.messages import JobMessage
from shared.schemas.usage import UsageEvent, usage_event
from shared.settings import Settings

log = logging.getLogger(__name__)


class JobExecution:
    """The worker's half of `InferenceService`, which derives from it and sets these attributes."""

    settings: Settings
    config: AppConfig
    router: Router
    store: JobStore
    blobs: BlobStore
    stream: UsageStream
    stats: DeploymentStats
    runners: RunnerPool
    limits: embeddings.Limits

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
            self._fail(job.id, "NotFound", exc.message)
            return
        if (utcnow() - job.created_at).total_seconds() > self.settings.job_ttl_s:
            self._end(job.id, JobStatus.EXPIRED, error=JobError(code="Expired", message="job expired in queue"))
            return
        job = self.store.replace(job.to(JobStatus.RUNNING, attempts=job.attempts + 1))
        try:
            payload = message.payload if message.payload is not None else self._claim(message)
            output = self._execute(job, deployment, payload)
        except (PermanentJobError, InvalidInput) as exc:
            self._fail(job.id, exc.code, exc.message)
            return
        except ConfigError as exc:  # the deployment does not load here (files, script): retrying won't help
            self._fail(job.id, "DeploymentUnavailable", exc.message)
            return
        except Exception as exc:
            self._note_attempt_error(job.id, f"{type(exc).__name__}: {exc}")
            raise
        events = tuple(  # a task that was stopped mid-way reports the work it did, billed all the same
            usage_event(
                job_id=job.id,
                tenant=job.tenant,
                endpoint=job.endpoint or self.router.endpoint_of(deployment.name),
                deployment=deployment.name,
                model=deployment.model_name,
                meter=meter,
                tokens=tokens,
                time=utcnow(),
                mirrored=job.mirrored,
            )
            for meter, tokens in output.usage.items()
        )
        result = None if job.mirrored else output.result  # a mirrored result is never shown: not kept either
        done = self._finish(
            job.id, output.status, result=result, error=output.error, usage=events, usage_published=not events
        )
        if done is None and events:
            done = self._record_usage(job.id, events)  # cancelled while it ran: bill the work done, once
        if done is not None and done.usage:
            self._publish(done)
        self._record_outcome(done or self.store.get(job.id))

    def fail_poisoned(self, body: str | bytes) -> None:
        """A message moved to the poison queue: fail its job, keeping the last reason."""
        message = self._parse_message(body)
        if message is None:
            return
        job = self.store.get(message.job_id)
        if job is None or job.status.terminal:
            return
        reason = f"Failed after {self.settings.max_dequeue_count} deliveries; last error: {job.last_error or 'unknown'}"
        self._fail(job.id, "PoisonMessage", reason)

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

    # --- internals -----------------------------------------------------------------------------------------
    def _execute(self, job: Job, deployment: Deployment, payload: dict[str, Any]) -> TaskOutput:
        if deployment.kind is RunnerKind.EMBEDDINGS:
            return embeddings.execute(job.id, payload, deployment, self.limits, self.runners.predictor(deployment))
        if deployment.kind is RunnerKind.CHAT:
            runner = self.runners.generator(deployment)
            return chat.execute(job, payload, deployment, runner, self.blobs, lambda: self._stopped(job.id))
        if deployment.kind is RunnerKind.SCORE:
            return score.execute(payload, self.runners.scorer(deployment).run)
        raise PermanentJobError(f"Runner kind {deployment.kind} is not supported.")

    def _fail(self, job_id: str, code: str, message: str) -> None:
        self._end(job_id, JobStatus.FAILED, error=JobError(code=code, message=message))

    def _end(self, job_id: str, status: JobStatus, **changes: Any) -> None:
        self._record_outcome(self._finish(job_id, status, **changes))

    def _record_outcome(self, job: Job | None) -> None:
        outcome = deployment_stats.outcome_of(job) if job is not None else None
        if outcome is None:
            return
        try:
            self.stats.record(outcome)
        except TransientError as exc:  # operational figures: never a reason to fail or redeliver a job
            log.warning("outcome of job %s not recorded: %s", outcome.job_id, exc)

    def _parse_message(self, body: str | bytes) -> JobMessage | None:
        try:
            return JobMessage.model_validate_json(body)
        except ValidationError as exc:
            job_id = _job_id_of(body)
            if job_id and (job := self.store.get(job_id)) and not job.status.terminal:
                self._fail(job_id, "InvalidMessage", f"invalid queue message: {exc}")
            log.error("dropping an invalid queue message (job %s): %s", job_id, exc)
            return None

    def _job_for(self, message: JobMessage) -> Job | None:
        job = self.store.get(message.job_id)
        if job is not None:
            if (job.tenant, job.deployment.lower()) != (message.tenant, message.deployment.lower()):
                # Another tenant's (or deployment's) job id: running it would bill and answer the wrong tenant.
                log.error("dropping message %s: it does not match its job's tenant and deployment", job.id)
                return None
            return job
        # A producer that writes to the queue directly: the job comes into being with its message.
        if message.tenant not in {t.name for t in self.config.tenants}:
            log.error("dropping message %s for unknown tenant %r", message.job_id, message.tenant)
            return None
        endpoint = self.router.endpoint_of(message.deployment)
        try:
            return self.store.create(Job.new(message.job_id, message.tenant, message.deployment, endpoint=endpoint))
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
