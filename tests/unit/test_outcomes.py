"""Job outcomes are written in batches: one store write per flush interval (or full batch), none lost to a store
that is briefly down."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from shared.adapters.memory import MemoryDeploymentStats
from shared.application.outcomes import OutcomeBuffer
from shared.domain.errors import StorageUnavailable
from shared.domain.ports import JobOutcome

T0 = datetime(2024, 5, 1, 13, 0, tzinfo=UTC)


class CountingStats(MemoryDeploymentStats):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []
        self.down = False

    def record(self, outcomes: Sequence[JobOutcome]) -> None:
        if self.down:
            raise StorageUnavailable("stats table unavailable")
        self.writes.append(len(outcomes))
        super().record(outcomes)


def outcome(job_id: str) -> JobOutcome:
    return JobOutcome(job_id, "acme", "e", "d", False, "succeeded", None, T0, 5.0, {"input_tokens": 3})


def test_outcomes_are_written_together_once_the_interval_passes() -> None:
    now = [0.0]
    stats = CountingStats()
    buffer = OutcomeBuffer(stats, flush_s=1.0, batch=100, clock=lambda: now[0])
    for i in range(5):
        buffer.add(outcome(f"job_{i}"))
    assert stats.writes == []
    now[0] = 1.0
    buffer.add(outcome("job_5"))
    assert stats.writes == [6] and len(stats.outcomes(T0, T0.replace(hour=14))) == 6


def test_a_full_batch_is_written_at_once_and_a_flush_writes_the_rest() -> None:
    stats = CountingStats()
    buffer = OutcomeBuffer(stats, flush_s=60, batch=4, clock=lambda: 0.0)
    for i in range(6):
        buffer.add(outcome(f"job_{i}"))
    assert stats.writes == [4]
    assert buffer.flush() == 2 and stats.writes == [4, 2]
    assert buffer.flush() == 0 and stats.writes == [4, 2]


def test_a_store_that_is_down_keeps_the_outcomes_for_the_next_flush() -> None:
    stats = CountingStats()
    buffer = OutcomeBuffer(stats, flush_s=0, clock=lambda: 0.0)
    stats.down = True
    buffer.add(outcome("job_a"))
    assert buffer.flush() == 0
    stats.down = False
    assert buffer.flush() == 1 and [o.job_id for o in stats.outcomes(T0, T0.replace(hour=14))] == ["job_a"]
