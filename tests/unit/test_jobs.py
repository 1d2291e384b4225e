import pytest

from shared.errors import Conflict
from shared.jobs import TERMINAL, Job, JobStatus, new_job_id


def test_a_job_moves_through_its_states() -> None:
    job = Job.new("j1", "acme", "d")
    running = job.to(JobStatus.RUNNING)
    done = running.to(JobStatus.SUCCEEDED, result={"ok": True})
    assert (running.started_at, done.finished_at) != (None, None)
    assert done.status is JobStatus.SUCCEEDED and done.result == {"ok": True}


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
@pytest.mark.parametrize("target", list(JobStatus))
def test_a_terminal_state_is_never_overwritten(terminal: JobStatus, target: JobStatus) -> None:
    job = Job.new("j1", "acme", "d").model_copy(update={"status": terminal})
    with pytest.raises(Conflict):
        job.to(target)


def test_only_a_queued_job_can_be_cancelled() -> None:
    assert Job.new("j", "t", "d").to(JobStatus.CANCELLED).status is JobStatus.CANCELLED
    with pytest.raises(Conflict):
        Job.new("j", "t", "d").to(JobStatus.RUNNING).to(JobStatus.CANCELLED)


def test_an_idempotency_key_names_one_job_per_tenant() -> None:
    assert new_job_id("acme", "k") == new_job_id("acme", "k")
    assert new_job_id("acme", "k") != new_job_id("globex", "k")
    assert new_job_id("acme", None) != new_job_id("acme", None)
