"""The gateway handler (HTTP side): authenticate, route, admit (budget, rate limits: before any work on the
body), check at the edge, submit the job (store, then queue), and await it — through job signals, never a loop
over the store on the local host. Also the job API: read, cancel, and a streamed job's chunks."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from shared import telemetry
from shared.application import journal
from shared.application.admission import Admission
from shared.application.budgets import BudgetGuard
from shared.application.content_safety import ContentSafety
from shared.application.credentials import Credentials
from shared.application.dispatch import Dispatcher, Outgoing
from shared.application.unit_of_work import JobUpdates
from shared.domain import deployment_stats
from shared.domain.auth import Caller
from shared.domain.config import AppConfig, Deployment, Endpoint
from shared.domain.content_safety import FilterResult, prompt_filter_results
from shared.domain.errors import ConfigError, Conflict, ContentFiltered, Forbidden, NotFound, TransientError
from shared.domain.jobs import Job, JobError, JobStatus, new_job_id
from shared.domain.ports import BlobStore, DeploymentStats, JobQueue, JobSignals, JobStore, UsageStream
from shared.domain.ratelimit import RateLimiter
from shared.domain.rates import RateState
from shared.domain.routing import Route, Router
from shared.runtimes.base import Edge, ExtraMode, Kind
from shared.runtimes.registry import RuntimeRegistry
from shared.runtimes.streams import StreamChunk, delete_chunks, read_chunks
from shared.schemas.messages import JobMessage
from shared.schemas.usage import Meter, usage_event
from shared.settings import Settings

log = logging.getLogger(__name__)

# Cross-process waits (the worker on another instance) re-read the job on this schedule: often at first, when
# most jobs end, then once a second, so a long wait costs one store read a second.
POLL_FIRST_S = 0.02
POLL_MAX_S = 1.0


@dataclass(frozen=True)
class Submitted:
    job: Job
    created: bool
    rate: RateState | None = None  # the tenant's rate limits after this request
    estimated_tokens: int = 0  # what its admission reserved; settled to the real usage when the job ends
    prompt_filter: list[dict[str, Any]] | None = None  # `prompt_filter_results`, where content safety is on


class Gateway:
    def __init__(
        self,
        *,
        settings: Settings,
        config: AppConfig,
        router: Router,
        queue: JobQueue,
        store: JobStore,
        blobs: BlobStore,
        signals: JobSignals,
        budgets: BudgetGuard,
        registry: RuntimeRegistry,
        cross_process: bool,
        dispatcher: Dispatcher,
        credentials: Credentials,
        stream: UsageStream | None = None,  # bills a prompt refused here (content safety), which no worker sees
        stats: DeploymentStats | None = None,  # and counts it among the deployment's outcomes
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.config = config
        self.router = router
        self.queue = queue
        self.store = store
        self.blobs = blobs
        self.signals = signals
        self.jobs = JobUpdates(store, blobs, signals)
        self.credentials = credentials
        rates = RateLimiter(config.tenants, clock=monotonic)
        self.admission = Admission(budgets, rates, store, signals, monotonic)
        self.registry = registry
        self.cross_process = cross_process  # a job may end in another process: signals alone can't tell
        self.dispatcher = dispatcher
        self.stream = stream
        self.stats = stats
        self.safety = ContentSafety(config, registry)

    # --- who, where ----------------------------------------------------------------------------------------
    def authenticate(self, credential: str | None) -> Caller:
        """The caller an API key or a bearer token names (may read the config file or a key set: see `ready`)."""
        return self.credentials.authenticate(credential)

    def route(self, model: str | None, header: str | None, kind: Kind[Any] | None = None) -> Route:
        """The deployment that serves a request to endpoint `model` (and the mirrors that get a copy)."""
        return self.router.route(model, header, kind.kind if kind is not None else None)

    def route_named(self, name: str, header: str | None, kind: Kind[Any]) -> Route:
        """The route for the endpoint or deployment an Azure OpenAI path names."""
        return self.router.route_named(name, header, kind.kind)

    def describe(self, model: str | None, header: str | None) -> Deployment:
        return self.router.describe(model, header)

    def endpoints(self) -> list[tuple[Endpoint, Deployment]]:
        """Every endpoint with the deployment that describes it (what clients pass as `model`)."""
        return [(e, self.router.describe(e.name, None)) for e in self.router.endpoints]

    # --- admit and submit ----------------------------------------------------------------------------------
    def check(self, route: Route, request: Any, extra: ExtraMode) -> dict[str, Any]:
        """The payload to queue, checked by the deployment's kind; InvalidInput naming the parameter."""
        deployment = route.deployment
        kind = self.registry.kind(deployment)
        return kind.check(request, deployment, Edge(extra, self.settings, lambda: self._edge_tool(deployment)))

    def accept(
        self, caller: Caller, route: Route, request: Any, extra: ExtraMode, idempotency_key: str | None = None
    ) -> Submitted:
        """Admit a parsed request, then check it, then queue its job: a request its tenant's budget or rates
        refuse costs nothing proportional to its body (a prompt is never tokenized for it)."""
        unchecked = request.model_dump(exclude_none=True) if isinstance(request, BaseModel) else request
        if not isinstance(unchecked, dict):
            unchecked = {}  # a scoring body may be any JSON: its estimate reads nothing of it
        with telemetry.span("inferq.submit"):
            return self._accept(caller, route, unchecked, lambda: self.check(route, request, extra), idempotency_key)

    def accepts_on_loop(self, caller: Caller, route: Route, body_bytes: int | None) -> bool:
        """Whether `accept` may run on the event loop: it costs less there than the thread hand-off it would take
        (measured: 16 clients served 3-7% faster). Only on the embedded backend (one local SQLite commit, never a
        network round trip), for a tenant without a budget (its admission may re-read its month from the ledger),
        for a kind whose check reads only the request, and for a body small enough to go inline (no payload blob
        to write)."""
        return (
            not self.cross_process
            and not self.admission.budgets.budgeted(caller.tenant)
            and body_bytes is not None
            and body_bytes <= self.settings.inline_payload_max_bytes
            and self.registry.kind(route.deployment).light_check
        )

    def submit(
        self, caller: Caller, target: Route | Deployment, payload: dict[str, Any], idempotency_key: str | None = None
    ) -> Submitted:
        """Queue a job for a checked payload, for a routed request or for one deployment by its own name
        (bypassing the traffic split: what producers and tests do)."""
        route = target if isinstance(target, Route) else self.router.direct(target)
        with telemetry.span("inferq.submit"):
            return self._accept(caller, route, payload, lambda: payload, idempotency_key)

    def settle(self, submitted: Submitted, job: Job) -> None:
        """A job the response waited for ended: its real usage replaces what its admission reserved."""
        if submitted.created:
            self.admission.settle(job)

    def _accept(
        self,
        caller: Caller,
        route: Route,
        unchecked: dict[str, Any],
        checked: Callable[[], dict[str, Any]],
        idempotency_key: str | None,
    ) -> Submitted:
        if not caller.tenant:  # an admin key belongs to no tenant: nobody could be billed for the job
            raise Forbidden("An admin key can't run inference: use a tenant's API key.")
        deployment = route.deployment
        # What the client asked for, not where the weights sent it: a repeat routed elsewhere is the same request.
        asked = deployment.name if route.pinned else route.endpoint.name
        job_id = new_job_id(caller.tenant, idempotency_key)
        if idempotency_key is not None and (existing := self._own(caller, job_id)) is not None:
            # A repeat was admitted when first sent: it costs neither rate nor budget again.
            return self._repeat(existing, asked, checked())
        estimate = self.registry.kind(deployment).estimate(deployment, unchecked)
        hold = self.admission.admit(caller.tenant, deployment, estimate)
        try:
            payload = checked()
            screened = self.safety.screen_prompt(caller.tenant, deployment, payload)
            job = Job.new(
                job_id,
                caller.tenant,
                deployment.name,
                _request_hash(asked, payload),
                endpoint=route.endpoint.name,
                key_id=caller.key_id,
            )
            if screened is not None and screened.filtered:
                job = self._refuse(job, deployment, payload, screened)
            else:
                job = self._enqueue(*self._outgoing(job, payload))
        except Conflict:  # the same key, sent concurrently: the other request made the job
            self.admission.release(hold, repeat=True)
            existing = self._own(caller, job_id)
            if existing is None:
                raise
            return self._repeat(existing, asked, payload)
        except BaseException:
            self.admission.release(hold)
            raise
        self.admission.bind(job.id, hold)
        telemetry.annotate_job(job)
        if screened is not None and screened.filtered:
            self.admission.settle(job)  # what it billed replaces what it reserved
            raise ContentFiltered(
                "The response was filtered due to the prompt triggering the deployment's content management policy "
                f"({screened.describe()}).",
                screened,
            )
        journal.transition("accepted", job, endpoint=job.endpoint)
        for mirror in route.mirrors:
            self._mirror(job, mirror, payload)
        annotation = prompt_filter_results(screened) if screened is not None else None
        return Submitted(job, created=True, rate=hold.rate, estimated_tokens=hold.tokens, prompt_filter=annotation)

    def _own(self, caller: Caller, job_id: str) -> Job | None:
        job = self.store.get(job_id)
        return job if job is not None and job.tenant == caller.tenant else None

    def _repeat(self, existing: Job, asked: str, payload: dict[str, Any]) -> Submitted:
        if existing.request_hash != _request_hash(asked, payload):
            raise Conflict("Idempotency-Key was already used with a different request.")
        # Its first request may have died before queueing it: the repeat sends its message.
        self.dispatcher.resend(existing, self._outgoing(existing, payload)[1])
        return Submitted(existing, created=False, rate=self.admission.rates.state(existing.tenant))

    # --- await ---------------------------------------------------------------------------------------------
    async def wait(self, job: Job, timeout_s: float) -> Job:
        """The job once terminal, or as it stands when `timeout_s` passes: woken by the job's signal, which
        carries the ended job (from the worker in this process, or from the instance's job watcher)."""
        deadline = time.monotonic() + timeout_s
        while not job.status.terminal:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return job
            signal = await self.signals.wait(job.id, remaining)
            if signal is not None and signal.job is not None:
                job = signal.job
        return job

    async def next_chunks(
        self, caller: Caller, job: Job, start: int, idle_s: float
    ) -> tuple[list[StreamChunk], Job] | None:
        """Chunks from `start` and the job, once there is a chunk or the job ended; None after `idle_s` of
        neither. When the job is terminal, the chunks are all there are. `job` is the caller's own (it submitted
        it): in process, its end comes by signal and only the chunks are read; across processes, the job too."""
        deadline = time.monotonic() + idle_s
        poll = POLL_FIRST_S
        while True:
            seen = self.signals.mark(job.id)  # before the read: a chunk written after it still wakes the wait
            if self.cross_process:
                chunks, job = await asyncio.to_thread(self.read_stream, caller, job.id, start)
            else:
                job = self.signals.ended(job.id) or job  # before the chunks: once it ended, every chunk is there
                # Small local files (the embedded backend's blobs), read on the loop: a thread hand-off to read
                # them cost more, and under a generating thread it waited for the interpreter lock each way.
                chunks = read_chunks(self.blobs, job.id, start)
            if chunks or job.status.terminal:
                return chunks, job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            signal = await self.signals.wait(job.id, min(remaining, poll) if self.cross_process else remaining, seen)
            if signal is not None and signal.job is not None:
                job = signal.job  # ended: the next read takes every chunk there is
            poll = min(poll * 2, POLL_MAX_S)

    # --- the job API ---------------------------------------------------------------------------------------
    def get_job(self, caller: Caller, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None or job.tenant != caller.tenant or job.mirrored:
            # Another tenant's job, and a mirrored copy of a request, are as absent as a missing one.
            raise NotFound(f"Job {job_id} not found.")
        telemetry.annotate_job(job)  # a poll's HTTP span names the job it read
        return job

    def cancel(self, caller: Caller, job_id: str) -> Job:
        job = self.get_job(caller, job_id)
        if job.status is not JobStatus.QUEUED and not (job.status is JobStatus.RUNNING and self._stoppable(job)):
            raise Conflict(f"Job {job_id} is {job.status}; only a queued job or a generation can be cancelled.")
        cancelled = self.jobs.finish(job_id, JobStatus.CANCELLED)
        if cancelled is None:
            raise Conflict(f"Job {job_id} ended meanwhile; it can't be cancelled.")
        return cancelled

    def read_stream(self, caller: Caller, job_id: str, start: int) -> tuple[list[StreamChunk], Job]:
        """The job, then the stream chunks from `start` written so far: when the job is terminal, they are all."""
        job = self.get_job(caller, job_id)
        return read_chunks(self.blobs, job_id, start), job

    def end_stream(self, caller: Caller, job_id: str, relayed: int, complete: bool) -> None:
        """The HTTP side is done with a stream: its relayed chunks go; a stream its client left is cancelled
        (the worker notices within a few tokens and bills what it generated)."""
        self.get_job(caller, job_id)
        written = relayed
        if not complete and self.jobs.finish(job_id, JobStatus.CANCELLED) is None:
            # It had ended: its worker wrote every chunk and discards none, so the ones not relayed go too.
            written += len(read_chunks(self.blobs, job_id, relayed))
        delete_chunks(self.blobs, job_id, 0, written)

    def render(self, job: Job) -> Any:
        """The response body of a succeeded job, as its kind renders it."""
        assert job.result is not None
        try:
            kind = self.registry.kind(self.config.deployment(job.deployment))
        except NotFound:  # the deployment left the config since: the result as stored
            return job.result
        return kind.render(job.result)

    # --- internals -----------------------------------------------------------------------------------------
    def _refuse(self, job: Job, deployment: Deployment, payload: dict[str, Any], screened: FilterResult) -> Job:
        """A prompt content safety refuses: never queued, recorded as a failed job that bills its input tokens
        (Azure bills a filtered prompt: the service evaluated it), published now or kept with the job."""
        self.store.create(job)  # no message: nothing runs it; Conflict for an idempotent repeat
        tokens = self.safety.prompt_tokens(payload, self._edge_tool(deployment))
        event = usage_event(
            job_id=job.id,
            tenant=job.tenant,
            endpoint=job.endpoint,
            deployment=deployment.name,
            model=deployment.model_name,
            meter=Meter.INPUT_TOKENS,
            tokens=tokens,
            time=job.created_at,
            key_id=job.key_id,
        )
        error = JobError(code=ContentFiltered.code, message=f"The prompt was filtered: {screened.describe()}.")
        done = self.jobs.finish(job.id, JobStatus.FAILED, error=error, usage=(event,) if tokens else ())
        assert done is not None  # nothing else knows the job yet
        journal.transition("failed", done, since=done.created_at)
        self._record_outcome(done)
        telemetry.job_ended(done)  # in the request and token metrics too
        telemetry.tokens_used(done, {Meter.INPUT_TOKENS: tokens})
        if done.usage and self.stream is not None:
            try:
                self.stream.publish(done.usage)
            except TransientError as exc:  # kept with the job: the worker's publish timer sends it
                log.warning("usage of job %s kept with it for a later publish: %s", job.id, exc)
                return done
            done = self.jobs.update(job.id, lambda fresh: fresh.published(), current=done) or done
        return done

    def _record_outcome(self, job: Job) -> None:
        """The refused job in the deployment's outcomes (/deployments, the dashboard), as a worker records its jobs.
        Operational figures: a store that fails here loses the figure, never the refusal or its bill."""
        outcome = deployment_stats.outcome_of(job)
        if outcome is None or self.stats is None:
            return
        try:
            self.stats.record([outcome])
        except TransientError as exc:
            log.warning("outcome of job %s not recorded: %s", job.id, exc)

    def _edge_tool(self, deployment: Deployment) -> Any:
        try:
            return self.registry.edge_tool(deployment)
        except ConfigError as exc:  # the worker's own check still decides
            log.warning("no edge check for %s: %s", deployment.name, exc)
            return None

    def _outgoing(self, job: Job, payload: dict[str, Any]) -> tuple[Job, Outgoing]:
        """The job's queue message (with its payload aside when too large to go inline: claim-check)."""
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        payload_ref = None
        if len(body) > self.settings.inline_payload_max_bytes:
            payload_ref = f"payloads/{job.id}.json"  # the message carries only the reference
            job = job.claim_checked(payload_ref)
        message = JobMessage(
            job_id=job.id,
            tenant=job.tenant,
            deployment=job.deployment,
            payload=None if payload_ref else payload,
            payload_ref=payload_ref,
            traceparent=telemetry.traceparent(),  # the worker's spans join this request's trace
        ).model_dump_json(exclude_none=True)
        return job, Outgoing(message, payload_ref, body if payload_ref else b"")

    def _enqueue(self, job: Job, outgoing: Outgoing) -> Job:
        """Record the job and send its message; Conflict when the id exists (an idempotent repeat)."""
        try:
            with telemetry.span("inferq.enqueue", kind=telemetry.PRODUCER):
                return self.dispatcher.dispatch(job, outgoing)
        except TransientError as exc:
            self.jobs.finish(job.id, JobStatus.FAILED, error=JobError(code="EnqueueFailed", message=str(exc)))
            raise

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
            key_id=job.key_id,
        )
        try:
            self._enqueue(*self._outgoing(mirror, copy))
        except (Conflict, TransientError) as exc:
            log.warning("request %s not mirrored to %s: %s", job.id, deployment.name, exc)

    def _stoppable(self, job: Job) -> bool:
        """A kind whose running jobs check their status as they go (generation) can be cancelled running."""
        try:
            return self.registry.kind(self.config.deployment(job.deployment)).cancellable
        except NotFound:
            return False


def _request_hash(asked: str, payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([asked, payload], sort_keys=True).encode("utf-8")).hexdigest()
