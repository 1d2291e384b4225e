import pytest

from shared.domain.errors import Conflict
from shared.domain.jobs import TERMINAL, Job, JobStatus, new_job_id


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


def test_a_queued_or_running_job_can_be_cancelled() -> None:
    # Running → cancelled is a generation its client stopped; the service allows it only for those.
    assert Job.new("j", "t", "d").to(JobStatus.CANCELLED).status is JobStatus.CANCELLED
    assert Job.new("j", "t", "d").to(JobStatus.RUNNING).to(JobStatus.CANCELLED).status is JobStatus.CANCELLED


def test_an_idempotency_key_names_one_job_per_tenant() -> None:
    assert new_job_id("acme", "k") == new_job_id("acme", "k")
    assert new_job_id("acme", "k") != new_job_id("globex", "k")
    assert new_job_id("acme", None) != new_job_id("acme", None)


def test_usage_is_recorded_once_on_a_job_stopped_mid_work_and_its_state_stays() -> None:
    from shared.schemas.usage import Meter, usage_event

    cancelled = Job.new("j", "t", "d").to(JobStatus.RUNNING).to(JobStatus.CANCELLED)
    event = usage_event(
        job_id="j",
        tenant="t",
        endpoint="d",
        deployment="d",
        model="m",
        meter=Meter.OUTPUT_TOKENS,
        tokens=3,
        time=cancelled.updated_at,
    )
    billed = cancelled.with_usage((event,))
    assert billed.status is JobStatus.CANCELLED and billed.finished_at == cancelled.finished_at
    assert billed.usage == (event,) and not billed.usage_published
    with pytest.raises(Conflict):
        billed.with_usage((event,))  # billed once
    with pytest.raises(Conflict):
        Job.new("j", "t", "d").to(JobStatus.RUNNING).with_usage((event,))  # a running job records it as it ends
