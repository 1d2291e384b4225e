"""A tiny OTLP/HTTP receiver for the telemetry row: accepts what the host's exporters send (traces and metrics,
http/protobuf), answers 200 with an empty response, and counts the spans it was sent, so the row shows the export
really happened. It stands in for a collector; it keeps nothing."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    requests: int = 0
    spans: int = 0
    bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class OtlpSink:
    def __init__(self) -> None:
        received = self.received = Received()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                spans = _spans(body) if self.path.endswith("/v1/traces") else 0
                with received.lock:
                    received.requests += 1
                    received.spans += spans
                    received.bytes += len(body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OtlpSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _spans(body: bytes) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
