"""Observability: the pipeline's OpenTelemetry spans and metrics, and the one place that sets them up.

`configure` (once, when a host starts) picks the export from the environment: Azure Monitor when
APPLICATIONINSIGHTS_CONNECTION_STRING is set, OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is, else nothing. Until then
(or `use`, which tests call with in-memory providers) every helper here is a no-op that builds nothing: no span,
no attribute dict, no `traceparent` in a message. Span and metric names are listed in the README (Observability).
"""

from __future__ import annotations

import logging
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
from shared.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter, MeterProvider
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.trace import TracerProvider

log = logging.getLogger(__name__)

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
_configured: str | None = None


def use(tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None) -> None:
    """Record spans and metrics with these providers (None: don't). `configure` calls it; so do tests, with
    in-memory exporters, and `use(None, None)` afterwards."""
    global _tracer, _metrics
    _tracer = tracer_provider.get_tracer("inferq") if tracer_provider is not None else None
    _metrics = _Instruments(meter_provider.get_meter("inferq")) if meter_provider is not None else None


def configure(settings: Settings, app: Any = None) -> str:
    """Set up the export once per process, and instrument the FastAPI `app`: "azure-monitor", "otlp" or "off"."""
    global _configured
    if _configured is not None:
        return _configured
    try:
        mode = _configure(settings)
    except Exception:  # telemetry must never keep the app from starting
        log.exception("telemetry could not be configured; running without it")
        mode = "off"
    if mode != "off" and app is not None:
        instrument(app)
    _configured = mode
    log.info("telemetry: %s", mode)
    return mode


def _configure(settings: Settings) -> str:
    if settings.otel_sdk_disabled:
        return "off"
    if settings.applicationinsights_connection_string:
        from azure.monitor.opentelemetry import configure_azure_monitor

        # Identity-based where the Bicep says so: the exporter reads APPLICATIONINSIGHTS_AUTHENTICATION_STRING.
        # The HTTP spans are ours (`instrument`), not the distro's FastAPI instrumentation.
        configure_azure_monitor(
            connection_string=settings.applicationinsights_connection_string,
            instrumentation_options={"fastapi": {"enabled": False}},
        )
        use(trace.get_tracer_provider(), _global_meter_provider())
        return "azure-monitor"
    if settings.otlp_endpoint:
        from opentelemetry import metrics

        tracer_provider, meter_provider = otlp_providers(settings)
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        use(tracer_provider, meter_provider)
        return "otlp"
    return "off"


def otlp_providers(settings: Settings) -> tuple[SdkTracerProvider, SdkMeterProvider]:
    """Providers exporting over OTLP (`OTEL_EXPORTER_OTLP_PROTOCOL`: http/protobuf or grpc); the SDK reads the
    other standard variables itself (endpoint, headers, OTEL_BSP_SCHEDULE_DELAY, OTEL_METRIC_EXPORT_INTERVAL ...)."""
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if settings.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
            OTLPMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    resource = Resource.create({SERVICE_NAME: settings.otel_service_name or "inferq"})
    tracer_provider = SdkTracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    meter_provider = SdkMeterProvider([PeriodicExportingMetricReader(OTLPMetricExporter())], resource=resource)
    return tracer_provider, meter_provider


def instrument(app: Any) -> None:
    """The HTTP server span of every request: `ServerSpans` outermost in the app's middleware (before its first
    request). Our own ASGI middleware rather than opentelemetry-instrumentation-fastapi: measured in process on
    this app's routes, that adds ~185 µs a request, this ~35 µs (its http.server metrics are left out: inferq.*
    count the requests)."""
    app.add_middleware(ServerSpans)


class ServerSpans:
    """A SERVER span per HTTP request, continuing the caller's `traceparent`: named `<method> <route template>`,
    with the method, path, route and status (never the body, the query or a header's value)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        tracer = _tracer
        if tracer is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carried = next((v for k, v in scope.get("headers", ()) if k == b"traceparent"), None)
        parent = parent_of(carried.decode("latin-1")) if carried else None
        status = 0

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        method = scope.get("method", "")
        with tracer.start_as_current_span(method, context=parent, kind=SpanKind.SERVER) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                route = getattr(scope.get("route"), "path", None)
                span.update_name(f"{method} {route}" if route else method)
                span.set_attributes(
                    {
                        "http.request.method": method,
                        "url.path": scope.get("path", ""),
                        "http.route": route or "",
                        "http.response.status_code": status,
                    }
                )
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))


def _global_meter_provider() -> MeterProvider:
    from opentelemetry import metrics

    return metrics.get_meter_provider()


# --- spans -----------------------------------------------------------------------------------------------------


def tracing() -> bool:
    return _tracer is not None


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


# --- logs ------------------------------------------------------------------------------------------------------


class TraceIds(logging.Filter):
    """Gives every record `trace`: " trace_id=<32 hex>" inside a span, "" outside, so a format can name it."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        record.trace = f" trace_id={ctx.trace_id:032x}" if ctx.is_valid else ""
        return True


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(trace)s"


def configure_logging(level: int = logging.INFO) -> None:
    """The local host's log lines, each with the trace id of the span it was written in."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.addFilter(TraceIds())
