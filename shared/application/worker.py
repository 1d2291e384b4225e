"""The worker handler (queue side): run a delivered job on its deployment's runtime, fail a poisoned one,
publish usage kept for later, and record each job's outcome for the per-deployment view."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from shared import telemetry
from shared.application import journal
from shared.application.content_safety import ContentSafety
from shared.application.outcomes import OutcomeBuffer
from shared.application.unit_of_work import JobUpdates
from shared.domain import deployment_stats
from shared.domain.config import AppConfig, Deployment
from shared.domain.errors import (
    ConfigError,
    Conflict,
    InvalidInput,
    ModelNotBuilt,
    NotFound,
    PermanentJobError,
    TransientError,
)
from shared.domain.jobs import Job, JobError, JobStatus, utcnow
from shared.domain.ports import BlobStore, DeploymentStats, JobQueue, JobSignals, JobStore, UsageStream
from shared.domain.routing import Router
from shared.runtimes.base import Kind, TaskOutput, Work
from shared.runtimes.registry import RuntimeRegistry
from shared.schemas.messages import JobMessage
from shared.schemas.usage import UsageEvent, usage_event
from shared.settings import Settings

log = logging.getLogger(__name__)
STOP_CHECK_S = 0.25  # across processes, how often a running generation reads its job to see a cancel


class Worker:
    def __init__(
        self,
        *,
        settings: Settings,
        config: AppConfig,
        router: Router,
        store: JobStore,
        blobs: BlobStore,
        stream: UsageStream,
        stats: DeploymentStats,
        signals: JobSignals,
        registry: RuntimeRegistry,
        queue: JobQueue,
        cross_process: bool = False,
    ) -> None:
        self.settings = settings
        self.config = config
        self.router = router
        self.store = store
        self.jobs = JobUpdates(store, blobs, signals)
        self.blobs = blobs
        self.stream = stream
        self.outcomes = OutcomeBuffer(stats, settings.stats_flush_s)
        self.signals = signals
        self.registry = registry
        self.queue = queue  # where a job past its tenant's running bound goes back to
        self._running: Counter[str] = Counter()  # jobs running here, per tenant
        self._running_lock = threading.Lock()
        self.cross_process = cross_process  # a job may be cancelled by another process: its signal can't come
        self.safety = ContentSafety(config, registry)

    def process(self, body: str | bytes, dequeue_count: int = 1) -> None:
        """Run one delivered job message. Returns normally when the message is done with (acknowledge it);
        raises when a redelivery may succeed (the host poisons it after maxDequeueCount deliveries)."""
        message = self._parse_message(body)
        if message is None:
            return
        parent = telemetry.parent_of(message.traceparent)  # the request's trace, on every delivery
        with telemetry.job_span(message.job_id, message.tenant, message.deployment, dequeue_count, parent):
            self._deliver(body, message, parent, dequeue_count)

    def _deliver(
        self, body: str | bytes, message: JobMessage, parent: telemetry.Context | None, dequeue_count: int
    ) -> None:
        if not self._enter(message.tenant):
            # Past the tenant's bound: back on the queue for later, as a new message (not a failed delivery, so
            # no step towards poison). Other tenants' messages run meanwhile.
            self.queue.send(body if isinstance(body, str) else body.decode("utf-8"), self.settings.tenant_defer_s)
            log.info("job %s deferred: tenant %s has %d jobs running", message.job_id, message.tenant, self._limit)
            return
        try:
            self._run(message, parent, dequeue_count)
        finally:
            self._leave(message.tenant)

    def _enter(self, tenant: str) -> bool:
        """A slot for the tenant's job: always within its bound; past it, only while `tenant_max_running` slots
        stay free for other tenants (a lone tenant is never slowed)."""
        with self._running_lock:
            busy = sum(self._running.values())
            if self._running[tenant] >= self._limit and busy >= self.settings.worker_concurrency - self._limit:
                return False
            self._running[tenant] += 1
            return True

    def _leave(self, tenant: str) -> None:
        with self._running_lock:
            self._running[tenant] -= 1
            if not self._running[tenant]:
                del self._running[tenant]

    @property
    def _limit(self) -> int:
        return self.settings.tenant_max_running

    def _run(self, message: JobMessage, parent: telemetry.Context | None = None, dequeue_count: int = 1) -> None:
        job = self._job_for(message)
        if job is None or job.status.terminal:
            return  # a redelivery of a finished job changes nothing
        telemetry.queue_waited(parent, job, first_delivery=dequeue_count == 1)
        telemetry.annotate_job(job)
        try:
            deployment = self.config.deployment(message.deployment)
        except NotFound as exc:
            self._end(self.jobs.fail(job.id, "NotFound", exc.message))
            return
        if (utcnow() - job.created_at).total_seconds() > self.settings.job_ttl_s:
            expired = JobError(code="Expired", message="job expired in queue")
            self._end(self.jobs.finish(job.id, JobStatus.EXPIRED, error=expired))
            return
        job = self.store.replace(job.start())
        journal.transition("started", job, since=job.created_at, attempt=job.attempts)
        try:
            payload = message.payload if message.payload is not None else self._claim(message)
            kind = self.registry.kind(deployment)
            run = telemetry.span("inferq.model.run")
            work = Work(
                job,
                deployment,
                self.settings,
                self.blobs,
                stopped=self._stopped(job.id),
                progress=lambda: self.signals.notify(job.id),
                screen=None if job.mirrored else self.safety.screen(job.tenant, deployment),
            )
            with run as span:
                if span.is_recording():
                    span.set_attributes(_gen_ai(kind, deployment))
                output = kind.execute(work, payload, self.registry.runtime(deployment))
        except (PermanentJobError, InvalidInput) as exc:
            self._end(self.jobs.fail(job.id, exc.code, exc.message))
            return
        except (ConfigError, ModelNotBuilt) as exc:  # the deployment does not load here (files, script, not built)
            self._end(self.jobs.fail(job.id, "DeploymentUnavailable", exc.message))
            return
        except Exception as exc:
            self.jobs.note_error(job.id, f"{type(exc).__name__}: {exc}")
            raise
        try:
            self._complete(job, deployment, kind, output)
        except TransientError:
            raise  # the store or stream did not answer: a redelivery finishes it (the result is recomputed)
        except Exception as exc:
            # Whatever breaks while finishing, the job must not stay running: fail it with the reason.
            log.exception("job %s: finishing failed", job.id)
            self._end(self.jobs.fail(job.id, "FinishFailed", f"{type(exc).__name__}: {exc}"))

    def fail_poisoned(self, body: str | bytes) -> None:
        """A message moved to the poison queue: fail its job, keeping the last reason."""
        message = self._parse_message(body)
        if message is None:
            return
        job = self.store.get(message.job_id)
        if job is None or job.status.terminal:
            return
        reason = f"Failed after {self.settings.max_dequeue_count} deliveries; last error: {job.last_error or 'unknown'}"
        telemetry.job_poisoned(job.deployment)
        self._end(self.jobs.fail(job.id, "PoisonMessage", reason))

    def flush_outcomes(self) -> int:
        """Write the job outcomes buffered for the per-deployment view (a timer calls this)."""
        return self.outcomes.flush()

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

    # --- internals -----------------------------------------------------------------------------------------
    def _complete(self, job: Job, deployment: Deployment, kind: Kind[Any], output: TaskOutput) -> None:
        """Record what the model did: the job's result and its usage, billed once whatever happened meanwhile."""
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
                key_id=job.key_id,
            )
            for meter, tokens in output.usage.items()
        )
        # A mirrored result is never shown: not kept either.
        result = None if job.mirrored or output.result is None else output.result.model_dump()
        # Usage that bills the same on a rerun is published first, so the job's one final write records it as
        # published: no outbox entry to add and retire. Otherwise it is kept with the job, then published.
        _annotate_usage(telemetry.current_span(), kind, deployment, output)
        telemetry.tokens_used(job, output.usage)
        published = bool(events) and kind.deterministic_usage and self._published(job.id, events)
        with telemetry.span("inferq.result.write"):
            done = self.jobs.finish(
                job.id,
                output.status,
                result=result,
                error=output.error,
                usage=events,
                usage_published=published,
                current=job,
            )
        if done is None and events:  # cancelled while it ran: bill the work done, once

            def bill(j: Job) -> Job | None:
                if j.usage or not j.status.terminal:
                    return None
                return j.with_usage(events).published() if published else j.with_usage(events)

            done = self.jobs.update(job.id, bill)
        if done is not None and done.usage and not done.usage_published:
            self._publish(done)
        self._end(done or self.store.get(job.id))

    def _end(self, job: Job | None) -> None:
        """A job reached its terminal state: wake whoever waits for it, and count it for its deployment."""
        if job is not None:
            journal.transition(job.status.value, job, since=job.created_at)
            telemetry.job_ended(job)  # counted, and its outcome on the job's span
        self._record_outcome(job)

    def _record_outcome(self, job: Job | None) -> None:
        outcome = deployment_stats.outcome_of(job) if job is not None else None
        if outcome is not None:
            self.outcomes.add(outcome)

    def _parse_message(self, body: str | bytes) -> JobMessage | None:
        try:
            return JobMessage.model_validate_json(body)
        except ValidationError as exc:
            job_id = _job_id_of(body)
            if job_id and (job := self.store.get(job_id)) and not job.status.terminal:
                self._end(self.jobs.fail(job_id, "InvalidMessage", f"invalid queue message: {exc}"))
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

    def _stopped(self, job_id: str) -> Callable[[], bool]:
        """Whether the running job was cancelled meanwhile: known at once when that happened in this process
        (its signal); across processes, by reading the job at most every STOP_CHECK_S."""
        last = [time.monotonic()]

        def stopped() -> bool:
            if self.signals.ended(job_id) is not None:
                return True
            if not self.cross_process or time.monotonic() - last[0] < STOP_CHECK_S:
                return False
            last[0] = time.monotonic()
            job = self.store.get(job_id)
            return job is None or job.status.terminal

        return stopped

    def _published(self, job_id: str, events: tuple[UsageEvent, ...], raise_errors: bool = False) -> bool:
        """Whether the events reached the usage stream; if not, they stay kept with the job."""
        try:
            with telemetry.span("inferq.usage.publish", kind=telemetry.PRODUCER):  # the events carry its traceparent
                self.stream.publish(events)
        except TransientError as exc:
            log.warning("usage of job %s kept with it for a later publish: %s", job_id, exc)
            if raise_errors:
                raise
            return False
        return True

    def _publish(self, job: Job, raise_errors: bool = False) -> None:
        """Publish the usage kept with a job, then mark it published."""
        if self._published(job.id, job.usage, raise_errors):
            self.jobs.update(job.id, lambda fresh: None if fresh.usage_published else fresh.published(), current=job)


def _gen_ai(kind: Kind[Any], deployment: Deployment) -> dict[str, str]:
    """The OpenTelemetry GenAI semantic-convention attributes of a model run, for the kinds that name theirs."""
    attributes = {"inferq.deployment": deployment.name, "gen_ai.request.model": deployment.model_name}
    operation = getattr(kind, "gen_ai_operation", None)  # a kind that runs no generative model names none
    if operation:
        attributes["gen_ai.operation.name"] = operation
    return attributes


def _annotate_usage(span: telemetry.Span, kind: Kind[Any], deployment: Deployment, output: TaskOutput) -> None:
    if not span.is_recording():
        return
    attributes: dict[str, str | int] = {**_gen_ai(kind, deployment)}
    for meter, count in output.usage.items():
        attributes[f"inferq.usage.{meter}"] = count
        if meter.counts_tokens:
            attributes[f"gen_ai.usage.{meter}"] = count  # input_tokens, output_tokens
    span.set_attributes(attributes)


def _job_id_of(body: str | bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    job_id = data.get("job_id") if isinstance(data, dict) else None
    return job_id if isinstance(job_id, str) else None


__all__ = ["UsageEvent", "Worker"]
