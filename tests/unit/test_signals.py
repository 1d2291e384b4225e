"""Job signals: in process they carry the ended job to its waiters with no store reads, and can't be missed
between a read and a wait; the watcher reads jobs that end elsewhere in batched rounds, once a second per job
after its first second."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from shared.adapters.memory import MemoryJobStore
from shared.adapters.signals import InProcessJobSignals, WatchingJobSignals
from shared.domain.jobs import Job, JobStatus


class CountingStore(MemoryJobStore):
    def __init__(self) -> None:
        super().__init__()
        self.rounds: list[int] = []  # ids per get_many

    def get_many(self, job_ids: Sequence[str]) -> list[Job]:
        self.rounds.append(len(job_ids))
        return super().get_many(job_ids)


def test_a_signal_before_the_wait_is_not_missed() -> None:
    signals = InProcessJobSignals()
    seen = signals.mark("job_a")
    signals.notify("job_a")  # a chunk, written between the relay's read and its wait
    signal = asyncio.run(signals.wait("job_a", 5, after=seen))
    assert signal is not None and signal.job is None
    done = Job.new("job_a", "acme", "d").to(JobStatus.RUNNING).to(JobStatus.SUCCEEDED)
    signals.notify("job_a", done)
    late = asyncio.run(signals.wait("job_a", 5))  # waiting after it ended: answered at once, from memory
    assert late is not None and late.job == done


def test_a_wait_times_out_with_none() -> None:
    assert asyncio.run(InProcessJobSignals().wait("job_never", 0.01)) is None


def test_the_watcher_finds_jobs_that_ended_elsewhere_in_batched_reads() -> None:
    store = CountingStore()
    signals = WatchingJobSignals(store, first_s=0.01, then_s=0.05)
    for i in range(20):
        store.create(Job.new(f"job_{i:02d}", "acme", "d"))

    async def main() -> list[Job | None]:
        waits = [asyncio.create_task(signals.wait(f"job_{i:02d}", 10)) for i in range(20)]
        await asyncio.sleep(0.05)
        for i in range(20):
            done = store.get(f"job_{i:02d}")
            assert done is not None
            store.replace(done.to(JobStatus.RUNNING).to(JobStatus.CANCELLED) if i % 2 else done.to(JobStatus.EXPIRED))
        return [s.job if s else None for s in await asyncio.gather(*waits)]

    jobs = asyncio.run(main())
    assert all(j is not None and j.status.terminal for j in jobs)
    assert max(store.rounds) == 20  # one read round covers every waiting request


def test_the_watcher_reads_a_long_wait_once_a_second_after_its_first() -> None:
    # The defaults: every 0.1 s (first_s) in the first second of a wait (window_s), then every second (then_s).
    # Rounds run every 10 ms of a fake clock, so the counts don't depend on how the machine schedules threads.
    now = [0.0]
    store = CountingStore()
    signals = WatchingJobSignals(store, clock=lambda: now[0])
    store.create(Job.new("job_slow", "acme", "d"))
    with signals._lock:
        signals._watch_job("job_slow")  # what a wait does, without the thread

    def rounds_until(t: float) -> int:
        before = len(store.rounds)
        while now[0] < t - 1e-9:
            now[0] = round(now[0] + 0.01, 2)
            signals._round()
        return len(store.rounds) - before

    assert rounds_until(1.05) == 10  # every first_s for the first second
    assert rounds_until(4.05) == 3  # then every then_s
    ended_elsewhere = store.get("job_slow")
    assert ended_elsewhere is not None
    store.replace(ended_elsewhere.to(JobStatus.CANCELLED))
    rounds_until(5.05)
    ended = signals.ended("job_slow")
    assert ended is not None and ended.status is JobStatus.CANCELLED
    with signals._lock:  # the wait is over: nobody waits, so nothing is read
        signals._since.clear()
        signals._due.clear()
    assert rounds_until(8.05) == 0


def test_ended_jobs_are_remembered_briefly_and_boundedly(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.adapters import signals as module

    signals = InProcessJobSignals()
    done = [Job.new(f"job_{i}", "acme", "d").to(JobStatus.RUNNING).to(JobStatus.SUCCEEDED) for i in range(3000)]
    for job in done:
        signals.notify(job.id, job)
    assert signals.ended("job_0") is None and signals.ended("job_2999") == done[-1]
    assert len(signals._ended) == module.RECENT  # a job carries its result: never an unbounded cache
    monkeypatch.setattr(module, "RECENT_S", 0.0)
    late = Job.new("job_late", "acme", "d").to(JobStatus.RUNNING).to(JobStatus.SUCCEEDED)
    signals.notify(late.id, late)
    assert signals.ended("job_2999") is None and list(signals._ended) == ["job_late"]
