"""The local host stopped as a service manager or Ctrl+C stops it (SIGTERM, SIGINT) still runs its own shutdown:
what it buffers (job outcomes for /deployments, spans) is written before the process ends."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import start_host


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_host_after_its_buffered_outcomes_are_written(tmp_path: Path, sig: int) -> None:
    # Outcomes flushed only at shutdown: an hour between flushes.
    host = start_host(tmp_path, env={"INFERQ_STATS_FLUSH_S": "3600"})
    try:
        with host.client() as client:
            response = client.post("/embeddings", json={"input": "written before the host exits"})
            assert response.status_code == 200
        job_id = response.headers["x-inferq-job-id"]
    finally:
        host.process.send_signal(sig)
        host.process.wait(timeout=30)
    with sqlite3.connect(host.data_dir / "inferq.sqlite3") as db:
        rows = db.execute("SELECT job_id FROM deployment_outcomes").fetchall()
    assert rows == [(job_id,)], host.log()[-2000:]


def test_a_sigterm_exports_the_spans_still_buffered(tmp_path: Path) -> None:
    from scripts.benchkit.otlp_sink import OtlpSink

    with OtlpSink() as sink:
        # Spans leave only at shutdown: a minute between batch exports.
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "60000"}
        host = start_host(tmp_path, env=env)
        try:
            with host.client() as client:
                assert client.post("/embeddings", json={"input": "traced"}).status_code == 200
            assert sink.received.spans == 0  # still buffered in the host
        finally:
            host.process.send_signal(signal.SIGTERM)
            host.process.wait(timeout=30)
        assert sink.received.spans >= 5, host.log()[-2000:]  # HTTP, submit, enqueue, queue wait, job ...
