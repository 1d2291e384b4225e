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
from shared.domain.jobs import utcnow
from shared.domain.ports import BlobStore, DeploymentStats, UsageLedger
from shared.domain.routing import Router
from shared.settings import Settings

STATS_DEFAULT_RANGE = timedelta(hours=24)
EARLIEST = datetime.min.replace(tzinfo=UTC)


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
    ) -> None:
        self.settings = settings
        self.config = config
        self.router = router
        self.ledger = ledger
        self.blobs = blobs
        self.stats = stats

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
