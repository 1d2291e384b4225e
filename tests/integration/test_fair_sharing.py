"""Fair sharing on the real model (issue 13, defect 3): one tenant's big embeddings job runs as many small batches,
so another tenant's one-input request is served while it still runs, not after it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from functions.azure.indexing import trigger
from functions.local.runtime import QueuePump
from shared.bootstrap import Inferq, bootstrap, set_app
from shared.domain.auth import Caller
from shared.domain.config import load_config
from shared.domain.jobs import JobStatus
from shared.settings import Settings
from tests.conftest import wait_for

ACME, GLOBEX = Caller("acme"), Caller("globex")


@pytest.fixture
def fair(tmp_path: Path, config_path: Path) -> Iterator[Inferq]:
    # One 256-token input per batch: the big job below is 64 batches, on the machine's cores.
    settings = Settings(data_dir=tmp_path / "data", config=config_path, max_batch_tokens=256, _env_file=None)
    app = bootstrap(settings, config=load_config(config_path))
    set_app(app)  # what the function objects call
    pump = QueuePump(
        app.queue, trigger("run_job"), poison=app.poison, max_dequeue_count=5, visibility_timeout_s=60, concurrency=4
    )
    stop = threading.Event()

    def deliver() -> None:
        while not stop.is_set():
            if not pump.pump_once():
                stop.wait(0.01)

    thread = threading.Thread(target=deliver, daemon=True)
    thread.start()
    yield app
    stop.set()
    thread.join(10)
    pump.shutdown()
    set_app(None)


def test_another_tenants_request_is_served_while_a_big_job_still_runs(fair: Inferq) -> None:
    deployment = fair.config.default_deployment
    big = fair.gateway.submit(ACME, deployment, {"input": ["word " * 400] * 64}).job  # 256 tokens each
    wait_for(lambda: fair.store.get(big.id).status is JobStatus.RUNNING)  # type: ignore[union-attr]
    small = fair.gateway.submit(GLOBEX, deployment, {"input": "a short one"}).job
    wait_for(lambda: fair.store.get(small.id).status.terminal, timeout=60)  # type: ignore[union-attr]
    assert fair.store.get(big.id).status is JobStatus.RUNNING  # type: ignore[union-attr]  # still going
    assert fair.store.get(small.id).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]
    wait_for(lambda: fair.store.get(big.id).status.terminal, timeout=120)  # type: ignore[union-attr]
    done = fair.store.get(big.id)
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.result is not None
    assert len(done.result["data"]) == 64 and done.result["usage"]["prompt_tokens"] == 64 * 256
