"""DeploymentStats contract (fake, SQLite and Azure Table storage): outcomes round-trip exactly, a job recorded again
replaces its first outcome, and a time range returns the jobs that finished in it, across hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.domain.ports import DeploymentStats, JobOutcome

T0 = datetime(2024, 5, 1, 10, 59, 59, 999_000, tzinfo=UTC)


def outcome(job_id: str, finished_at: datetime = T0, **changes: object) -> JobOutcome:
    fields: dict[str, object] = {
        "job_id": job_id, "tenant": "acme", "endpoint": "embed", "deployment": "minilm-blue", "mirrored": False,
        "status": "succeeded", "error": None, "finished_at": finished_at, "latency_ms": 12.345,
        "usage": {"input_tokens": 17, "output_tokens": 3},
    }  # fmt: skip
    fields.update(changes)
    return JobOutcome(**fields)  # type: ignore[arg-type]


def test_an_outcome_round_trips_exactly(stats: DeploymentStats) -> None:
    live = outcome("job_1")
    shadow = outcome("job_1-mirror-minilm-shadow", deployment="minilm-shadow", mirrored=True, status="failed",
                     error="ScriptError", usage={}, finished_at=T0 + timedelta(microseconds=1))  # fmt: skip
    odd = outcome("job/with#odd?chars", usage={"requests": 1})
    for o in (live, shadow, odd):
        stats.record([o])
    got = stats.outcomes(T0 - timedelta(minutes=1), T0 + timedelta(minutes=1))
    assert sorted(got, key=lambda o: o.job_id) == sorted([live, shadow, odd], key=lambda o: o.job_id)


def test_recording_a_job_again_replaces_its_outcome(stats: DeploymentStats) -> None:
    stats.record([outcome("job_1", latency_ms=5.0)])
    stats.record([outcome("job_1", latency_ms=7.5)])  # a redelivered job finishing again counts once
    (only,) = stats.outcomes(T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert only.latency_ms == 7.5


def test_a_range_holds_the_jobs_that_finished_in_it_across_hours(stats: DeploymentStats) -> None:
    times = {f"job_{i}": T0 + timedelta(minutes=20 * i) for i in range(-4, 5)}  # 09:39 … 12:19, over four hours
    for job_id, finished in times.items():
        stats.record([outcome(job_id, finished)])
    start, end = T0 - timedelta(minutes=30), T0 + timedelta(minutes=40)  # [10:29:59.999, 11:39:59.999)
    got = stats.outcomes(start, end)
    assert [o.job_id for o in got] == [j for j, t in sorted(times.items(), key=lambda kv: kv[1]) if start <= t < end]
    assert [o.job_id for o in got] == ["job_-1", "job_0", "job_1"]
    assert stats.outcomes(T0 + timedelta(days=1), T0 + timedelta(days=2)) == []


def test_a_batch_records_many_outcomes_across_hours_and_a_repeat_within_it_counts_once(
    stats: DeploymentStats,
) -> None:
    base = datetime(2024, 5, 1, 13, 0, tzinfo=UTC)
    batch = [outcome(f"job_b{i:03d}", base + timedelta(minutes=i)) for i in range(150)]  # 3 hours, > 100 a partition
    stats.record([*batch, outcome("job_b000", base, latency_ms=99.0)])
    found = stats.outcomes(base, base + timedelta(hours=3))
    assert sorted(o.job_id for o in found) == sorted(o.job_id for o in batch)
    assert next(o for o in found if o.job_id == "job_b000").latency_ms == 99.0
    stats.record([])
