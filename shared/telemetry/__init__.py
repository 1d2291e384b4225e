"""Observability: the pipeline's OpenTelemetry spans and metrics (names listed in the README, Observability).

Until `setup.configure` (once, when a host starts) or `use` (tests, with in-memory providers) gives it providers,
every helper here is a no-op that builds nothing: no span, no attribute dict, no `traceparent` in a message.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context as Context  # re-exported: the services annotate with it
from opentelemetry.trace import INVALID_SPAN, Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace import Span as Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.domain.jobs import Job, utcnow
from shared.schemas.usage import UsageEvent

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter, MeterProvider
    from opentelemetry.trace import TracerProvider

CONSUMER, PRODUCER = SpanKind.CONSUMER, SpanKind.PRODUCER
_NO_SPAN: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)
_W3C = TraceContextTextMapPropagator()
# Histogram buckets: durations in seconds (a millisecond to a few minutes), batch sizes in inputs.
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _Instruments:
    def __init__(self, meter: Meter) -> None:
        self.requests = meter.create_counter(
            "inferq.requests", "{request}", "Jobs (one per request) that reached a terminal state, by outcome"
        )
        self.queue_wait = meter.create_histogram(
            "inferq.queue.wait",
            "s",
            "From a job's enqueue to its first delivery",
            explicit_bucket_boundaries_advisory=SECONDS,
        )
        self.duration = meter.create_histogram(
            "inferq.job.duration",
            "s",
            "A job's execution, from start to its end",
            explicit_bucket_boundaries_advisory=SECONDS,
        )
        self.batch_size = meter.create_histogram(
            "inferq.batch.size",
            "{input}",
            "Inputs per model run of the micro-batcher",
            explicit_bucket_boundaries_advisory=SIZES,
        )
        self.tokens = meter.create_counter("inferq.tokens", "{token}", "Usage of finished jobs, per meter")
        self.poisoned = meter.create_counter("inferq.jobs.poisoned", "{job}", "Jobs failed after maxDequeueCount")
        self.dead_lettered = meter.create_counter(
            "inferq.usage.dead_lettered", "{event}", "Usage events the billing could not take"
        )
        self.ingest_lag = meter.create_histogram(
            "inferq.ledger.ingest_lag",
            "s",
            "From a usage event's time to its ledger ingest",
            explicit_bucket_boundaries_advisory=SECONDS,
        )


_tracer: trace.Tracer | None = None
_metrics: _Instruments | None = None


def use(tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None) -> None:
    """Record spans and metrics with these providers (None: don't). `configure` calls it; so do tests, with
    in-memory exporters, and `use(None, None)` afterwards."""
    global _tracer, _metrics
    _tracer = tracer_provider.get_tracer("inferq") if tracer_provider is not None else None
    _metrics = _Instruments(meter_provider.get_meter("inferq")) if meter_provider is not None else None


# --- spans -----------------------------------------------------------------------------------------------------


def tracing() -> bool:
    return _tracer is not None


def tracer() -> trace.Tracer | None:
    return _tracer


def span(
    name: str, *, kind: SpanKind = SpanKind.INTERNAL, parent: Context | None = None
) -> AbstractContextManager[Span]:
    """A span made current for the block (a shared no-op when tracing is off). Set attributes only when
    `span.is_recording()`: building them costs more than the span."""
    if _tracer is None:
        return _NO_SPAN
    return _tracer.start_as_current_span(name, context=parent, kind=kind)


def job_span(
    job_id: str, tenant: str, deployment: str, dequeue_count: int, parent: Context | None
) -> AbstractContextManager[Span]:
    """A worker's delivery of a job message: a CONSUMER span continuing the trace the message carried."""
    if _tracer is None:
        return _NO_SPAN
    attributes: dict[str, str | int] = {
        "inferq.job_id": job_id,
        "inferq.tenant": tenant,
        "inferq.deployment": deployment,
        "inferq.dequeue_count": dequeue_count,
    }
    return _tracer.start_as_current_span("inferq.job", context=parent, kind=CONSUMER, attributes=attributes)


def current_span() -> Span:
    return trace.get_current_span() if _tracer is not None else INVALID_SPAN


def traceparent() -> str | None:
    """The current span's W3C `traceparent`, for a message or an event to carry; None outside a span."""
    if _tracer is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def parent_of(value: str | None) -> Context | None:
    """The context a carried `traceparent` names (None when tracing is off, or it is absent or malformed)."""
    if _tracer is None or not value:
        return None
    context = _W3C.extract({"traceparent": value})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def annotate_job(job: Job, target: Span | None = None) -> None:
    """Who and what a span is about: the job, its tenant, endpoint and deployment."""
    if _tracer is None:
        return
    target = target or trace.get_current_span()
    if target.is_recording():
        target.set_attributes(
            {
                "inferq.job_id": job.id,
                "inferq.tenant": job.tenant,
                "inferq.endpoint": job.endpoint or job.deployment,
                "inferq.deployment": job.deployment,
            }
        )


def queue_waited(parent: Context | None, job: Job, first_delivery: bool) -> None:
    """The job's time on the queue, from its enqueue to this delivery: a span with its real start, and the
    metric for a first delivery (a redelivery's wait includes the failed attempts)."""
    if _tracer is None and _metrics is None:
        return
    now_ns = time.time_ns()
    enqueued_ns = int(job.created_at.timestamp() * 1e9)
    if _tracer is not None:
        waited = _tracer.start_span("inferq.queue.wait", context=parent, start_time=min(enqueued_ns, now_ns))
        if waited.is_recording():
            waited.set_attributes({"inferq.job_id": job.id, "inferq.deployment": job.deployment})
        waited.end(end_time=now_ns)
    if _metrics is not None and first_delivery:
        _metrics.queue_wait.record(max(0.0, (now_ns - enqueued_ns) / 1e9), {"inferq.deployment": job.deployment})


def capture() -> SpanContext | None:
    """The current span's context, for work another thread does on its behalf (a micro-batch)."""
    if _tracer is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    return ctx if ctx.is_valid else None


def batch_span(label: str, callers: Sequence[SpanContext | None]) -> AbstractContextManager[Span]:
    """One model run of a micro-batch: a child of its first caller's span, linked to every caller's (a batch
    serves several traces), with its size."""
    if _metrics is not None:
        _metrics.batch_size.record(len(callers), {"inferq.deployment": label})
    if _tracer is None:
        return _NO_SPAN
    distinct = list({(c.trace_id, c.span_id): c for c in callers if c is not None}.values())
    parent = trace.set_span_in_context(NonRecordingSpan(distinct[0])) if distinct else None
    return _tracer.start_as_current_span(
        "inferq.batch",
        context=parent,
        links=[Link(c) for c in distinct],
        attributes={"inferq.deployment": label, "inferq.batch.size": len(callers)},
    )


@contextmanager
def billing_spans(traceparents: Sequence[str | None] | None) -> Iterator[list[Span]]:
    """The billing ingest of a batch of usage events, as one span in each trace the events carry (a batch holds
    many requests' events; all the spans cover the same ledger transaction)."""
    if _tracer is None:
        yield []
        return
    carried = list(dict.fromkeys(traceparents or [None]))
    spans = [_tracer.start_span("inferq.billing.ingest", context=parent_of(tp), kind=CONSUMER) for tp in carried]
    try:
        # The log lines meanwhile name the first trace.
        with trace.use_span(spans[0], end_on_exit=False, record_exception=False, set_status_on_exception=False):
            yield spans
    except BaseException as exc:
        for s in spans:
            s.record_exception(exc)
            s.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        for s in spans:
            s.end()


# --- metrics ---------------------------------------------------------------------------------------------------


def job_ended(job: Job) -> None:
    """A job reached its terminal state: its outcome on the current (the job's) span; counted by outcome, with
    its execution time."""
    span = current_span()
    if span.is_recording():
        span.set_attribute("inferq.outcome", job.status.value)
        if job.error is not None:
            span.set_status(Status(StatusCode.ERROR, job.error.code))
    if _metrics is None:
        return
    attributes: dict[str, str | bool] = {
        "inferq.deployment": job.deployment,
        "inferq.outcome": job.status.value,
        "inferq.mirrored": job.mirrored,
    }
    _metrics.requests.add(1, attributes)
    if job.started_at is not None and job.finished_at is not None:
        _metrics.duration.record(max(0.0, (job.finished_at - job.started_at).total_seconds()), attributes)


def tokens_used(job: Job, usage: dict[Any, int]) -> None:
    if _metrics is None:
        return
    for meter, count in usage.items():
        attributes: dict[str, str | bool] = {
            "inferq.deployment": job.deployment,
            "inferq.meter": str(meter),
            "inferq.mirrored": job.mirrored,
        }
        _metrics.tokens.add(count, attributes)


def job_poisoned(deployment: str) -> None:
    if _metrics is not None:
        _metrics.poisoned.add(1, {"inferq.deployment": deployment})


def usage_dead_lettered() -> None:
    if _metrics is not None:
        _metrics.dead_lettered.add(1)


def usage_ingested(events: Sequence[UsageEvent], now: datetime | None = None) -> None:
    """The lag from each event's time to the ledger ingest that took it."""
    if _metrics is None:
        return
    now = now or utcnow()
    for e in events:
        _metrics.ingest_lag.record(max(0.0, (now - e.time).total_seconds()), {"inferq.deployment": e.deployment})
