"""The one service behind every entry point: HTTP routes, the queue worker, the billing consumer and the
local host all call these methods. The worker side (`process`, `fail_poisoned`, `publish_pending_usage`) is
inherited from `shared/execution.py`."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.application import usage_ingest as billing_ingest
from shared.application.budgets import BudgetGuard
from shared.application.streams import StreamChunk, delete_chunks, read_chunks
from shared.application.worker import JobExecution
from shared.domain import billing, deployment_stats, metering, usage_report
from shared.domain.auth import Caller, KeyDirectory
from shared.domain.config import AppConfig, Deployment, RunnerKind
from shared.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, TransientError
from shared.domain.jobs import Job, JobError, JobStatus, new_job_id, utcnow
from shared.domain.ports import BlobStore, DeploymentStats, JobQueue, JobStore, UsageLedger, UsageStream
from shared.domain.ratelimit import RateLimiter, RateState, estimate_tokens
from shared.domain.routing import Route, Router
from shared.runtimes import embeddings
from shared.runtimes.registry import RunnerPool
from shared.schemas.messages import JobMessage
from shared.schemas.usage import UsageEvent
from shared.settings import Settings

log = logging.getLogger(__name__)

STATS_DEFAULT_RANGE = timedelta(hours=24)
EARLIEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Submitted:
    job: Job
    created: bool
    rate: RateState | None = None  # the tenant's rate limits after this request
    estimated_tokens: int = 0  # what the rate limiter charged; settled to the real usage when the job ends


class InferenceService(JobExecution):
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
        stats: DeploymentStats,
        runners: RunnerPool,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.config = config
        self.queue = queue
        self.store = store
        self.blobs = blobs
        self.stream = stream
        self.ledger = ledger
        self.stats = stats
        self.runners = runners
        self.keys = KeyDirectory(config)
        self.limits = embeddings.Limits(settings.max_inputs, settings.max_input_chars)
        self.budgets = BudgetGuard(ledger, config, settings.budget_cache_s)
        self.router = Router(config, rng)
        self.rate_limits = RateLimiter(config.tenants, clock=monotonic)

    # --- the HTTP side -------------------------------------------------------------------------------------
    def route(self, model: str | None, header: str | None, kind: RunnerKind | None = None) -> Route:
        """The deployment that serves a request to endpoint `model` (and the mirrors that get a copy)."""
        return self.router.route(model, header, kind)

    def deployment(self, name: str | None, kind: RunnerKind | None = None) -> Deployment:
        """A deployment by its own name (what the header names, and what producers put on the queue)."""
        deployment = self.config.deployment(name)
        if kind is not None and deployment.kind is not kind:
            raise InvalidInput(
                f"Model '{deployment.name}' is a {deployment.kind} model, not {kind}.",
                loc=("body", "model"),
                input=name,
            )
        return deployment

    def submit(
        self,
        caller: Caller,
        target: Route | Deployment,
        payload: dict[str, Any],
        idempotency_key: str | None = None,
    ) -> Submitted:
        route = target if isinstance(target, Route) else self.router.direct(target)
        deployment = route.deployment
        self.budgets.check(caller.tenant)  # every inference route submits: a tenant past its budget stops here
        tokens = estimate_tokens(deployment, payload)
        rate = self.rate_limits.admit(caller.tenant, tokens)
        # What the client asked for, not where the weights sent it: a repeat routed elsewhere is the same request.
        asked = deployment.name if route.pinned else route.endpoint.name
        request_hash = hashlib.sha256(json.dumps([asked, payload], sort_keys=True).encode("utf-8")).hexdigest()
        job = Job.new(
            new_job_id(caller.tenant, idempotency_key),
            caller.tenant,
            deployment.name,
            request_hash,
            endpoint=route.endpoint.name,
        )
        try:
            job = self._enqueue(job, payload)
        except Conflict:
            existing = self.store.get(job.id)
            if existing is None or existing.tenant != caller.tenant:
                raise
            if existing.request_hash != request_hash:
                raise Conflict("Idempotency-Key was already used with a different request.") from None
            return Submitted(existing, created=False, rate=rate, estimated_tokens=tokens)
        for mirror in route.mirrors:
            self._mirror(job, mirror, payload)
        return Submitted(job, created=True, rate=rate, estimated_tokens=tokens)

    def settle(self, caller: Caller, submitted: Submitted, job: Job) -> None:
        """A job the response waited for ended: its real token usage replaces the rate limiter's estimate."""
        if job.status.terminal and submitted.created:
            actual = sum(e.tokens for e in job.usage if e.meter.counts_tokens)
            self.rate_limits.settle(caller.tenant, submitted.estimated_tokens, actual)

    def describe(self, model: str | None, header: str | None) -> Deployment:
        return self.router.describe(model, header)

    def get_job(self, caller: Caller, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None or job.tenant != caller.tenant or job.mirrored:
            # Another tenant's job, and a mirrored copy of a request, are as absent as a missing one.
            raise NotFound(f"Job {job_id} not found.")
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
        written = relayed
        if not complete and self._finish(job_id, JobStatus.CANCELLED) is None:
            # It had ended: its worker wrote every chunk and discards none, so the ones not relayed go too.
            written += len(read_chunks(self.blobs, job_id, relayed))
        delete_chunks(self.blobs, job_id, 0, written)

    def deployments_view(self, caller: Caller, start: str | None, end: str | None) -> dict[str, Any]:
        """Endpoints, deployments, weights and per-deployment figures (admin keys only)."""
        if not caller.is_admin:
            raise Forbidden("Only an admin key may read the deployments view.")
        now = utcnow()
        until = usage_report.parse_moment(end, "to") if end else now
        # The default range stops at the first representable moment rather than overflowing before it.
        default_since = until - min(STATS_DEFAULT_RANGE, until - EARLIEST)
        since = usage_report.parse_moment(start, "from") if start else default_since
        if since > until:
            raise InvalidInput("'from' must not be after 'to'.", loc=("query", "from"), input=start)
        outcomes = self.stats.outcomes(since, until)
        return deployment_stats.view(self.config, self.router.endpoints, outcomes, since, until)

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
    def _enqueue(self, job: Job, payload: dict[str, Any]) -> Job:
        """Record the job and send its message; Conflict when the id exists (an idempotent repeat)."""
        body = json.dumps(payload, separators=(",", ":"))
        payload_ref = None
        if len(body.encode("utf-8")) > self.settings.inline_payload_max_bytes:
            payload_ref = f"payloads/{job.id}.json"  # claim-check: the message carries only the reference
            job = job.model_copy(update={"payload_ref": payload_ref})
        message = JobMessage(  # serialised before the job is recorded: a job is never left without its message
            job_id=job.id,
            tenant=job.tenant,
            deployment=job.deployment,
            payload=None if payload_ref else payload,
            payload_ref=payload_ref,
        ).model_dump_json(exclude_none=True)
        job = self.store.create(job)
        try:
            if payload_ref:
                self.blobs.put(payload_ref, body.encode("utf-8"))
            self.queue.send(message)
        except TransientError as exc:
            error = JobError(code="EnqueueFailed", message=str(exc))
            self._finish(job.id, JobStatus.FAILED, error=error)
            raise
        return job

    def _mirror(self, job: Job, deployment: Deployment, payload: dict[str, Any]) -> None:
        """A copy of the request for a mirror deployment, as a job of its own. Never streamed, never returned;
        a copy that can't be queued is logged and the live request goes on."""
        copy = {k: v for k, v in payload.items() if k not in ("stream", "stream_options")}
        mirror = Job.new(
            f"{job.id}-mirror-{deployment.name}",
            job.tenant,
            deployment.name,
            job.request_hash,
            endpoint=job.endpoint,
            mirrored=True,
        )
        try:
            self._enqueue(mirror, copy)
        except (Conflict, TransientError) as exc:
            log.warning("request %s not mirrored to %s: %s", job.id, deployment.name, exc)

    def _stoppable(self, job: Job) -> bool:
        """Generation jobs check their status as they go, so a running one can be cancelled."""
        try:
            return self.config.deployment(job.deployment).kind is RunnerKind.CHAT
        except NotFound:
            return False


__all__ = ["InferenceService", "Submitted", "UsageEvent"]
