"""The per-deployment view (`GET /deployments`): endpoints, their deployments and weights, and per deployment the
requests, errors, p50/p95 latency, tokens and cost of the jobs that finished in a time range.

The worker records every job's outcome through the `DeploymentStats` port as the job ends (best effort: an
outcome that can't be recorded is logged, never a reason to fail or retry the job); this module turns outcomes
into figures. Mirrored jobs count as requests, latency and errors of their deployment, and cost nothing.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from shared.domain import billing
from shared.domain.config import AppConfig, Endpoint
from shared.domain.jobs import Job, JobStatus
from shared.domain.ports import JobOutcome
from shared.domain.usage_report import unit_price
from shared.schemas.usage import Meter


def outcome_of(job: Job) -> JobOutcome | None:
    """The outcome of a terminal job; None for one still queued or running."""
    if not job.status.terminal or job.finished_at is None:
        return None
    usage: Counter[str] = Counter()
    for event in job.usage:
        usage[event.meter.value] += event.tokens
    return JobOutcome(
        job_id=job.id,
        tenant=job.tenant,
        endpoint=job.endpoint or job.deployment,
        deployment=job.deployment,
        mirrored=job.mirrored,
        status=job.status.value,
        error=job.error.code if job.error and job.status is not JobStatus.SUCCEEDED else None,
        finished_at=job.finished_at,
        latency_ms=(job.finished_at - job.created_at).total_seconds() * 1000,
        usage=dict(usage),
    )


def to_record(outcome: JobOutcome) -> dict[str, Any]:
    """The outcome as JSON-able fields (what the adapters store)."""
    return {
        "job_id": outcome.job_id,
        "tenant": outcome.tenant,
        "endpoint": outcome.endpoint,
        "deployment": outcome.deployment,
        "mirrored": outcome.mirrored,
        "status": outcome.status,
        "error": outcome.error,
        "finished_at": outcome.finished_at.isoformat(),
        "latency_ms": outcome.latency_ms,
        "usage": dict(outcome.usage),
    }


def from_record(record: dict[str, Any]) -> JobOutcome:
    usage = record["usage"]
    return JobOutcome(
        job_id=record["job_id"],
        tenant=record["tenant"],
        endpoint=record["endpoint"],
        deployment=record["deployment"],
        mirrored=bool(record["mirrored"]),
        status=record["status"],
        error=record["error"] or None,
        finished_at=datetime.fromisoformat(record["finished_at"]),
        latency_ms=float(record["latency_ms"]),
        usage={str(k): int(v) for k, v in (json.loads(usage) if isinstance(usage, str) else usage).items()},
    )


@dataclass
class Figures:
    """One deployment's numbers over the range."""

    deployment: str = ""
    endpoint: str = ""
    requests: int = 0
    mirrored: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    usage: Counter[str] = field(default_factory=Counter)  # everything it processed, mirrored included
    billed: Counter[str] = field(default_factory=Counter)  # live jobs only: what the ledger bills

    def add(self, outcome: JobOutcome) -> None:
        self.deployment, self.endpoint = outcome.deployment, outcome.endpoint
        self.requests += 1
        self.mirrored += outcome.mirrored
        self.errors += outcome.status in (JobStatus.FAILED, JobStatus.EXPIRED)
        self.latencies_ms.append(outcome.latency_ms)
        self.usage.update(outcome.usage)
        if not outcome.mirrored:
            self.billed.update(outcome.usage)

    @property
    def tokens(self) -> int:
        return sum(n for meter, n in self.usage.items() if meter != Meter.REQUESTS)

    def cost(self, config: AppConfig, deployment: str) -> Decimal:
        return billing.total(
            [billing.cost(n, unit_price(config, deployment, meter)) for meter, n in sorted(self.billed.items())]
        )


def summarize(outcomes: Iterable[JobOutcome]) -> dict[str, Figures]:
    """Figures per deployment (keyed by its lower-case name)."""
    figures: dict[str, Figures] = {}
    for outcome in outcomes:
        figures.setdefault(outcome.deployment.lower(), Figures()).add(outcome)
    return figures


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (a latency some request really had); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def view(
    config: AppConfig, endpoints: Sequence[Endpoint], outcomes: Iterable[JobOutcome], start: datetime, end: datetime
) -> dict[str, Any]:
    """The `GET /deployments` body; money as decimal strings, latencies in milliseconds."""
    figures = summarize(outcomes)
    body: list[dict[str, Any]] = []
    for endpoint in endpoints:
        deployments = []
        for name in endpoint.deployment_names:
            entry = _figures(config, name, figures.pop(name.lower(), Figures()))
            entry.update(
                model_name=config.deployment(name).model_name,
                traffic=endpoint.traffic.get(name, 0),
                mirror=endpoint.mirror.get(name, 0),
            )
            deployments.append(entry)
        kind = config.deployment(endpoint.primary()).kind.value
        body.append(
            {
                "name": endpoint.name,
                "kind": kind,
                "traffic": dict(endpoint.traffic),
                "mirror": dict(endpoint.mirror),
                "deployments": deployments,
            }
        )
    retired = [{**_figures(config, f.deployment, f), "endpoint": f.endpoint} for _, f in sorted(figures.items())]
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "currency": config.currency,
        "endpoints": body,
        "retired": retired,
    }


def _figures(config: AppConfig, name: str, f: Figures) -> dict[str, Any]:
    return {
        "name": name,
        "requests": f.requests,
        "mirrored_requests": f.mirrored,
        "errors": f.errors,
        "latency_ms": {"p50": _ms(percentile(f.latencies_ms, 0.5)), "p95": _ms(percentile(f.latencies_ms, 0.95))},
        "tokens": f.tokens,
        "usage": dict(sorted(f.usage.items())),
        "cost": billing.decimal_text(f.cost(config, name)),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
