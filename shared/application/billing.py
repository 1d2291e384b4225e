"""The billing handler (Event Hub side and the usage API): ingest usage batches exactly once, replay the ones
kept while the ledger was down, and report usage, metering records and the per-deployment view."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.application import usage_ingest
from shared.domain import billing, deployment_stats, metering, usage_report
from shared.domain.auth import Caller
from shared.domain.config import AppConfig
from shared.domain.errors import Forbidden, InvalidInput
from shared.domain.jobs import JobStatus, utcnow
from shared.domain.ports import BlobStore, DeploymentStats, JobStore, UsageLedger
from shared.domain.routing import Router
from shared.settings import Settings

STATS_DEFAULT_RANGE = timedelta(hours=24)
EARLIEST = datetime.min.replace(tzinfo=UTC)
FAILED_JOBS_SHOWN = 20
FAILED = (JobStatus.FAILED.value, JobStatus.EXPIRED.value)


class Billing:
    def __init__(
        self,
        *,
        settings: Settings,
        config: AppConfig,
        router: Router,
        ledger: UsageLedger,
        blobs: BlobStore,
        stats: DeploymentStats,
        jobs: JobStore,
    ) -> None:
        self.settings = settings
        self.config = config
        self.router = router
        self.ledger = ledger
        self.blobs = blobs
        self.stats = stats
        self.jobs = jobs

    def ingest_usage(
        self, bodies: Sequence[str | bytes], traceparents: Sequence[str | None] | None = None
    ) -> usage_ingest.BatchOutcome:
        """A batch of usage events; `traceparents` (one per body, when known) are the traces that produced them."""
        s = self.settings
        return usage_ingest.ingest(
            self.ledger,
            self.blobs,
            bodies,
            s.usage_ingest_attempts,
            s.usage_ingest_backoff_s,
            traceparents=traceparents,
        )

    def replay_kept_usage(self) -> usage_ingest.ReplayOutcome:
        """Bill the usage batches the consumer kept while the ledger was unavailable."""
        return usage_ingest.replay(self.ledger, self.blobs)

    def dead_letters(self, limit: int = 1000) -> list[usage_ingest.DeadLetter]:
        return usage_ingest.dead_letters(self.blobs, limit)

    def kept_batches(self, limit: int = 1000) -> list[str]:
        return usage_ingest.kept_batches(self.blobs, limit)

    def replay_dead_letter(self, letter: usage_ingest.DeadLetter) -> usage_ingest.LetterOutcome:
        return usage_ingest.replay_dead_letter(self.ledger, self.blobs, letter)

    def usage_report(
        self, caller: Caller, start: str | None, end: str | None, granularity: str, tenant: str | None = None
    ) -> usage_report.UsageReport:
        period = usage_report.parse_granularity(granularity)
        since, until = usage_report.parse_range(start, end, utcnow())
        name = self._usage_tenant(caller, tenant, all_allowed=False)
        assert name is not None
        totals = self.ledger.hourly_totals(name, since, until)
        return usage_report.build(totals, self.config, name, since, until, period)

    def metering_records(
        self, caller: Caller, start: str | None, end: str | None, tenant: str | None = None
    ) -> list[dict[str, Any]]:
        """Closed hours only (up to the start of the current one): an exported hour's quantity is final but
        for late events, which a re-export carries under the same record id."""
        now = utcnow()
        since, until = usage_report.parse_range(start, end, now)
        until = min(until, billing.hour_of(now))
        name = self._usage_tenant(caller, tenant, all_allowed=True)
        return metering.records(self.ledger.hourly_totals(name, since, until) if since < until else [], self.config)

    def deployments_view(self, caller: Caller, start: str | None, end: str | None) -> dict[str, Any]:
        """Endpoints, deployments, weights and per-deployment figures (admin keys only)."""
        if not caller.is_admin:
            raise Forbidden("Only an admin key may read the deployments view.")
        now = utcnow()
        until = usage_report.parse_moment(end, "to") if end else now
        # The default range stops at the first representable moment rather than overflowing before it.
        default_since = until - min(STATS_DEFAULT_RANGE, until - EARLIEST)
        since = usage_report.parse_moment(start, "from") if start else default_since
        if since > until:
            raise InvalidInput("'from' must not be after 'to'.", loc=("query", "from"), input=start)
        outcomes = self.stats.outcomes(since, until)
        return deployment_stats.view(self.config, self.router.endpoints, outcomes, since, until)

    def overview(self, caller: Caller, tenant: str | None, limit: int = FAILED_JOBS_SHOWN) -> dict[str, Any]:
        """What the dashboard needs beside /usage and /deployments: whose figures (an admin key picks any tenant,
        the first by default; a tenant key only its own), the tenants to pick from, the monthly budget, and the
        tenant's jobs that failed or expired in the last 24 hours, newest first (mirror copies for admins only)."""
        if tenant is None and caller.is_admin and not caller.tenant and self.config.tenants:
            tenant = self.config.tenants[0].name
        name = self._usage_tenant(caller, tenant, all_allowed=False)
        assert name is not None
        until = utcnow()
        since = until - STATS_DEFAULT_RANGE
        failed = [
            o
            for o in self.stats.outcomes(since, until)
            if o.tenant == name and o.status in FAILED and (caller.is_admin or not o.mirrored)
        ]
        failed = sorted(failed, key=lambda o: o.finished_at, reverse=True)[:limit]
        messages = {j.id: j.error.message for j in self.jobs.get_many([o.job_id for o in failed]) if j.error}
        budget = self.config.tenant(name).monthly_budget
        return {
            "tenant": name,
            "tenants": [t.name for t in self.config.tenants] if caller.is_admin else [name],
            "admin": caller.is_admin,
            "currency": self.config.currency,
            "monthly_budget": None if budget is None else billing.decimal_text(budget),
            "from": since.isoformat(),
            "to": until.isoformat(),
            "failed_jobs": [
                {
                    "id": o.job_id,
                    "endpoint": o.endpoint,
                    "deployment": o.deployment,
                    "status": o.status,
                    "mirrored": o.mirrored,
                    "finished_at": o.finished_at.isoformat(),
                    "error": {"code": o.error or "", "message": messages.get(o.job_id, "")},
                }
                for o in failed
            ],
        }

    def _usage_tenant(self, caller: Caller, requested: str | None, all_allowed: bool) -> str | None:
        """Whose usage the caller may read: its own; an admin key any tenant (all of them, where allowed)."""
        if requested is None or requested == caller.tenant:
            if caller.tenant:
                return caller.tenant
            if all_allowed:
                return None
            raise InvalidInput("An admin key must name the tenant.", loc=("query", "tenant"), input=None)
        if not caller.is_admin:
            raise Forbidden("Only an admin key may read another tenant's usage.")
        return self.config.tenant(requested).name
