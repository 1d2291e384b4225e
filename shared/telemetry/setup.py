"""Setting telemetry up, once per process: the export the environment asks for (Azure Monitor when
APPLICATIONINSIGHTS_CONNECTION_STRING is set, OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is, else nothing), the HTTP
server spans, and the trace id on log lines."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from shared import telemetry
from shared.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

log = logging.getLogger(__name__)
_configured: str | None = None


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


def shutdown() -> None:
    """Export what the providers buffer (spans, metrics) and stop them: the SDK's own atexit hook never runs when
    a signal ends the process, which is how a host is stopped."""
    if _configured in (None, "off"):
        return
    from opentelemetry import metrics

    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        stop = getattr(provider, "shutdown", None)
        if callable(stop):
            try:
                stop()
            except Exception:  # an exporter that can't reach its collector must not block the shutdown
                log.exception("telemetry: %s did not shut down cleanly", type(provider).__name__)


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
        telemetry.use(trace.get_tracer_provider(), _global_meter_provider())
        return "azure-monitor"
    if settings.otlp_endpoint:
        from opentelemetry import metrics

        tracer_provider, meter_provider = otlp_providers(settings)
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        telemetry.use(tracer_provider, meter_provider)
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
        tracer = telemetry.tracer()
        if tracer is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carried = next((v for k, v in scope.get("headers", ()) if k == b"traceparent"), None)
        parent = telemetry.parent_of(carried.decode("latin-1")) if carried else None
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
