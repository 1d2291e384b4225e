"""The per-deployment view from job outcomes: counts, errors, nearest-rank p50/p95, tokens, and the cost of live
(never mirrored) jobs at the configured prices."""

from datetime import UTC, datetime, timedelta

from shared.domain import deployment_stats
from shared.domain.jobs import Job, JobError, JobStatus
from shared.domain.ports import JobOutcome
from shared.schemas.usage import Meter, usage_event
from tests.unit.billing_fakes import CONFIG

T0 = datetime(2024, 5, 1, 10, tzinfo=UTC)


def outcome(n: int, deployment: str = "embed", *, latency: float = 10.0, status: str = "succeeded",
            mirrored: bool = False, usage: dict[str, int] | None = None) -> JobOutcome:  # fmt: skip
    return JobOutcome(
        job_id=f"job_{deployment}_{n}", tenant="acme", endpoint=deployment, deployment=deployment, mirrored=mirrored,
        status=status, error=None if status == "succeeded" else "ModelError", finished_at=T0 + timedelta(seconds=n),
        latency_ms=latency, usage={"input_tokens": 1000} if usage is None else usage,
    )  # fmt: skip


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert deployment_stats.percentile(values, 0.5) == 50.0 and deployment_stats.percentile(values, 0.95) == 95.0
    assert deployment_stats.percentile([7.0], 0.95) == 7.0 and deployment_stats.percentile([], 0.5) is None


def test_the_view_lists_endpoints_weights_and_figures_per_deployment() -> None:
    outcomes = [outcome(i, latency=float(i)) for i in range(1, 21)]
    outcomes += [outcome(21, status="failed", usage={}), outcome(22, status="expired", usage={})]
    outcomes += [
        outcome(30 + i, "chat", mirrored=True, usage={"input_tokens": 10, "output_tokens": 5}) for i in range(3)
    ]
    outcomes += [outcome(40, "scorer", usage={"requests": 1}), outcome(41, "retired-one")]
    view = deployment_stats.view(CONFIG, CONFIG.all_endpoints(), outcomes, T0, T0 + timedelta(hours=1))
    assert (view["from"], view["currency"]) == (T0.isoformat(), "EUR")
    by_name = {e["name"]: e for e in view["endpoints"]}
    assert list(by_name) == ["embed", "chat", "scorer"]
    assert (by_name["embed"]["kind"], by_name["embed"]["traffic"], by_name["embed"]["mirror"]) == (
        "embeddings",
        {"embed": 100},
        {},
    )
    (embed,) = by_name["embed"]["deployments"]
    assert embed == {
        "name": "embed",
        "model_name": "m",
        "traffic": 100,
        "mirror": 0,
        "requests": 22,
        "mirrored_requests": 0,
        "errors": 2,  # failed and expired
        "latency_ms": {"p50": 10.0, "p95": 19.0},  # the 11th and 21st of 22 (1..20 and two of 10)
        "tokens": 20_000,
        "usage": {"input_tokens": 20_000},
        "cost": "0.002",  # 20 × 1,000 tokens at 0.0001 per 1K
    }
    (chat,) = by_name["chat"]["deployments"]
    assert (chat["requests"], chat["mirrored_requests"], chat["tokens"], chat["cost"]) == (3, 3, 45, "0")
    (scorer,) = by_name["scorer"]["deployments"]
    assert (scorer["tokens"], scorer["usage"], scorer["cost"]) == (0, {"requests": 1}, "0.00002")
    (retired,) = view["retired"]
    assert (retired["name"], retired["endpoint"], retired["requests"], retired["cost"]) == (
        "retired-one",
        "retired-one",
        1,
        "0",
    )


def test_the_outcome_of_a_job_carries_its_endpoint_latency_error_and_usage() -> None:
    job = Job.new("job_1", "acme", "minilm-green", endpoint="embed", mirrored=True)
    assert deployment_stats.outcome_of(job) is None  # not finished
    event = usage_event(job_id="job_1", tenant="acme", endpoint="embed", deployment="minilm-green", model="m",
                        meter=Meter.INPUT_TOKENS, tokens=12, time=T0, mirrored=True)  # fmt: skip
    done = job.to(JobStatus.RUNNING).to(JobStatus.SUCCEEDED, usage=(event,))
    result = deployment_stats.outcome_of(done)
    assert result is not None
    assert (result.endpoint, result.deployment, result.mirrored, result.error) == ("embed", "minilm-green", True, None)
    assert result.usage == {"input_tokens": 12} and result.latency_ms >= 0
    failed = Job.new("job_2", "acme", "d").to(JobStatus.FAILED, error=JobError(code="ScriptError", message="boom"))
    assert deployment_stats.outcome_of(failed).error == "ScriptError"  # type: ignore[union-attr]
    assert deployment_stats.from_record(deployment_stats.to_record(result)) == result
