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
