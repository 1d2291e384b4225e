"""In-memory OpenTelemetry for the tests: the product's spans and metrics recorded by the SDK's in-memory span
exporter and metric reader (`shared.telemetry.use`), read back by name and trace."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import telemetry


@dataclass
class Otel:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def trace(self, trace_id: int) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.context is not None and s.context.trace_id == trace_id]

    def points(self, metric: str) -> list[Any]:
        """The data points of one metric (cumulative: everything since the test began)."""
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        found.extend(m.data.data_points)
        return found

    def total(self, metric: str, **attributes: Any) -> float:
        """A counter's sum, or a histogram's count, over the points whose attributes include these."""
        total = 0.0
        for point in self.points(metric):
            if all(point.attributes.get(k) == v for k, v in attributes.items()):
                total += point.count if hasattr(point, "bucket_counts") else point.value
        return total


@pytest.fixture
def otel() -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider([reader])
    telemetry.use(tracer_provider, meter_provider)
    try:
        yield Otel(tracer_provider, meter_provider, exporter, reader)
    finally:
        telemetry.use(None, None)
        tracer_provider.shutdown()
        meter_provider.shutdown()
