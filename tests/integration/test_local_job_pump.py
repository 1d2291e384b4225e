"""The local host's job pump takes a waiting message as soon as a job slot frees up, not at its next poll: a backlog
beyond `worker_concurrency` (a producer's burst, long generations) runs back to back. Before, only a new message
woke the pump; with every slot busy it slept, its idle wait doubling up to `max_poll_interval_s`."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from functions.local.host import LocalHost
from shared.bootstrap import Inferq
from shared.domain.auth import Caller
from shared.domain.jobs import JobStatus
from shared.settings import Settings
from tests.conftest import wait_for

ACME = Caller("acme")
pytestmark = pytest.mark.usefixtures("installed")  # the function objects call this test's service


@pytest.fixture
def settings(tmp_path: Path, config_path: Path) -> Settings:
    # One slot, and polls far apart: only a freed slot can start the next job within the test's wait.
    return Settings(
        data_dir=tmp_path / "data",
        config=config_path,
        stats_flush_s=0,
        worker_concurrency=1,
        poll_interval_s=60,
        max_poll_interval_s=60,
        _env_file=None,
    )


@pytest.fixture
def host(service: Inferq) -> Iterator[LocalHost]:
    local = LocalHost.build(service)
    yield local
    local.stop()


def test_a_freed_slot_starts_the_next_waiting_job_at_once(service: Inferq, host: LocalHost) -> None:
    deployment = service.config.default_deployment
    ids = [service.gateway.submit(ACME, deployment, {"input": f"text {i}"}).job.id for i in range(4)]
    host.start()  # four messages waiting, one slot

    def ended() -> bool:
        return all(service.gateway.get_job(ACME, i).status.terminal for i in ids)

    wait_for(ended, timeout=30)  # a poll would come only after 60 s
    assert {service.gateway.get_job(ACME, i).status for i in ids} == {JobStatus.SUCCEEDED}
