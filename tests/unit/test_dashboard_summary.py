"""`Billing.overview` (GET /dashboard/summary) on fakes: which tenant, which tenants to pick from, the budget, and
the failed jobs: the tenant's own, newest first, of the last 24 hours, mirror copies for admins only."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.domain.auth import Caller
from shared.domain.errors import Forbidden
from shared.domain.jobs import utcnow
from shared.domain.ports import JobOutcome
from tests.unit.fakes import ACME, ADMIN, GLOBEX, fake_app


def outcome(job_id: str, tenant: str, minutes_ago: float, status: str = "failed", mirrored: bool = False) -> JobOutcome:
    return JobOutcome(
        job_id=job_id,
        tenant=tenant,
        endpoint="e",
        deployment="d",
        mirrored=mirrored,
        status=status,
        error=None if status == "succeeded" else "ModelError",
        finished_at=utcnow() - timedelta(minutes=minutes_ago),
        latency_ms=5.0,
    )


def test_failed_jobs_are_the_tenants_own_newest_first_within_a_day_and_mirrors_for_admins_only() -> None:
    app = fake_app()
    app.billing.stats.record(
        [
            outcome("old", "acme", 25 * 60),
            outcome("first", "acme", 30),
            outcome("expired", "acme", 10, status="expired"),
            outcome("ok", "acme", 5, status="succeeded"),
            outcome("mirror", "acme", 3, mirrored=True),
            outcome("theirs", "globex", 1),
        ]
    )
    mine = app.billing.overview(ACME, None)
    assert [j["id"] for j in mine["failed_jobs"]] == ["expired", "first"]
    assert mine["failed_jobs"][0]["error"] == {"code": "ModelError", "message": ""}  # no stored job: no message
    assert mine["tenant"] == "acme" and mine["tenants"] == ["acme"] and mine["admin"] is False
    assert [j["id"] for j in app.billing.overview(ADMIN, "acme")["failed_jobs"]] == ["mirror", "expired", "first"]
    assert [j["id"] for j in app.billing.overview(GLOBEX, None)["failed_jobs"]] == ["theirs"]
    assert len(app.billing.overview(ACME, None, limit=1)["failed_jobs"]) == 1


def test_an_admin_gets_the_first_tenant_and_every_name_a_tenant_only_its_own() -> None:
    app = fake_app()
    admin = app.billing.overview(ADMIN, None)
    names = [t.name for t in app.billing.config.tenants]
    assert admin["tenant"] == names[0] and admin["tenants"] == names and admin["admin"] is True
    assert app.billing.overview(ADMIN, "thrifty")["monthly_budget"] == "0.00001"
    assert app.billing.overview(Caller("thrifty"), None)["monthly_budget"] == "0.00001"
    assert app.billing.overview(ACME, None)["monthly_budget"] is None
    with pytest.raises(Forbidden):
        app.billing.overview(ACME, "globex")
