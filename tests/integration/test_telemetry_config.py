"""`telemetry.setup.configure` picks the export from the environment, in a process of its own each time (the
OpenTelemetry providers are process-wide, set once): Azure Monitor with an Application Insights connection string,
OTLP over http/protobuf or grpc with an OTLP endpoint, nothing otherwise. Nothing is sent: the exporters point at a
closed local port, and only their types are read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

PROBE = """
import json
from opentelemetry import metrics, trace
from functions.http.app import app
from shared import telemetry
from shared.telemetry import setup
from shared.settings import Settings

mode = setup.configure(Settings(_env_file=None), app)
tracer_provider, meter_provider = trace.get_tracer_provider(), metrics.get_meter_provider()
processors = getattr(getattr(tracer_provider, "_active_span_processor", None), "_span_processors", ())
span_exporters = [type(p._batch_processor._exporter).__name__ for p in processors if hasattr(p, "_batch_processor")]
readers = getattr(meter_provider, "_metric_readers", ())
metric_exporters = [type(r._exporter).__name__ for r in readers if hasattr(r, "_exporter")]
print(json.dumps({
    "mode": mode,
    "again": setup.configure(Settings(_env_file=None), app),
    "tracer_provider": type(tracer_provider).__name__,
    "span_exporters": span_exporters,
    "metric_exporters": metric_exporters,
    "span_exporter_modules": [type(p._batch_processor._exporter).__module__ for p in processors
                              if hasattr(p, "_batch_processor")],
    "http_instrumented": any(m.cls is setup.ServerSpans for m in app.user_middleware),
    "tracing": telemetry.tracing(),
}))
for provider in (tracer_provider, meter_provider):
    getattr(provider, "shutdown", lambda: None)()
"""


def probe(tmp_path: Path, **env: str) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "APPLICATIONINSIGHTS_"))}
    full = {
        **clean,
        "TMPDIR": str(tmp_path),  # the Azure Monitor exporter's offline storage, if it writes any
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",  # no call home
        "OTEL_METRIC_EXPORT_TIMEOUT": "1000",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=full, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens


def test_nothing_is_configured_without_an_exporter(tmp_path: Path) -> None:
    result = probe(tmp_path)
    assert result["mode"] == result["again"] == "off"
    assert result["tracer_provider"] == "ProxyTracerProvider"  # the API's no-op until a provider is set
    assert result["span_exporters"] == [] and not result["http_instrumented"] and not result["tracing"]


@pytest.mark.parametrize(
    ("protocol", "module"),
    [("http/protobuf", "opentelemetry.exporter.otlp.proto.http"), ("grpc", "opentelemetry.exporter.otlp.proto.grpc")],
)
def test_an_otlp_endpoint_exports_over_otlp_with_the_protocol_asked_for(
    tmp_path: Path, protocol: str, module: str
) -> None:
    result = probe(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=CLOSED, OTEL_EXPORTER_OTLP_PROTOCOL=protocol)
    assert result["mode"] == result["again"] == "otlp"
    assert result["tracer_provider"] == "TracerProvider"
    assert result["span_exporters"] == ["OTLPSpanExporter"] and result["metric_exporters"] == ["OTLPMetricExporter"]
    assert all(m.startswith(module) for m in result["span_exporter_modules"])
    assert result["http_instrumented"] and result["tracing"]


def test_an_application_insights_connection_string_exports_to_azure_monitor(tmp_path: Path) -> None:
    connection = f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint={CLOSED}/"
    result = probe(
        tmp_path,
        APPLICATIONINSIGHTS_CONNECTION_STRING=connection,
        OTEL_EXPORTER_OTLP_ENDPOINT=CLOSED,  # Azure Monitor wins when both are set
    )
    assert result["mode"] == "azure-monitor"
    assert result["tracer_provider"] == "TracerProvider"
    assert "AzureMonitorTraceExporter" in result["span_exporters"]
    assert "AzureMonitorMetricExporter" in result["metric_exporters"]
    assert result["http_instrumented"] and result["tracing"]


def test_otel_sdk_disabled_turns_everything_off(tmp_path: Path) -> None:
    result = probe(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=CLOSED, OTEL_SDK_DISABLED="true")
    assert result["mode"] == "off" and result["span_exporters"] == [] and not result["tracing"]
