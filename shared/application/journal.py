"""One structured log line per job transition (accepted, started, succeeded/failed/cancelled/expired, billed),
each carrying the job id, tenant, deployment and, where it has one, a duration: what an operator greps or a log
query filters on to follow one request. `key=value` pairs; values with spaces are quoted."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from shared.domain.jobs import Job, utcnow
from shared.schemas.usage import UsageEvent

log = logging.getLogger("inferq.jobs")


def transition(event: str, job: Job, since: datetime | None = None, **fields: object) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    pairs = {"job": job.id, "tenant": job.tenant, "deployment": job.deployment}
    if since is not None:
        pairs["duration_ms"] = f"{(utcnow() - since).total_seconds() * 1000:.0f}"
    if job.error is not None and event in ("failed", "expired"):
        pairs["code"] = job.error.code
        pairs["reason"] = job.error.message[:300]
    log.info("job.%s %s", event, " ".join(f"{k}={_value(v)}" for k, v in {**pairs, **fields}.items()))


def billed(events: Sequence[UsageEvent]) -> None:
    """One line per job whose usage events the ledger took (a redelivered event is counted once there)."""
    if not log.isEnabledFor(logging.INFO):
        return
    jobs: dict[str, dict[str, object]] = {}
    for e in events:
        line = jobs.setdefault(e.job_id, {"job": e.job_id, "tenant": e.tenant, "deployment": e.deployment})
        line[str(e.meter)] = e.tokens
    for pairs in jobs.values():
        log.info("job.billed %s", " ".join(f"{k}={_value(v)}" for k, v in pairs.items()))


def _value(value: object) -> str:
    text = str(value)
    return '"' + text.replace('"', "'").replace("\n", " ") + '"' if (" " in text or not text) else text
