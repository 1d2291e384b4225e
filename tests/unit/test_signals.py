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
    # Scaled down: read every 10 ms in the first 0.2 s (first_s, window_s), then every 0.1 s (then_s); the
    # defaults are 0.1 s, 1 s and 1 s.
    store = CountingStore()
    signals = WatchingJobSignals(store, first_s=0.01, then_s=0.1, window_s=0.2)
    store.create(Job.new("job_slow", "acme", "d"))

    async def main() -> None:
        waiting = asyncio.create_task(signals.wait("job_slow", 10))
        await asyncio.sleep(0.2)
        first_window = len(store.rounds)
        await asyncio.sleep(0.3)
        later = len(store.rounds) - first_window
        assert later <= 4  # every `then_s`, not every `first_s` (which would be ~30)
        assert first_window >= 5
        ended_elsewhere_now = store.get("job_slow")
        assert ended_elsewhere_now is not None
        store.replace(ended_elsewhere_now.to(JobStatus.CANCELLED))
        signal = await waiting
        assert signal is not None and signal.job is not None and signal.job.status is JobStatus.CANCELLED

    asyncio.run(main())
    rounds = len(store.rounds)
    asyncio.run(asyncio.sleep(0.1))
    assert len(store.rounds) == rounds  # nobody waits: nothing is read


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
