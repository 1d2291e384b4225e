"""The billing handler on fakes: usage from the worker's log billed once, bad events dead-lettered, batches kept
through a ledger outage and replayed, and who may read which tenant's usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from shared.application.usage_ingest import DEAD_LETTER_PREFIX, REPLAY_PREFIX, BatchOutcome, ReplayOutcome
from shared.bootstrap import Inferq
from shared.domain.auth import Caller
from shared.domain.errors import Forbidden, InvalidInput, NotFound, StorageUnavailable
from shared.domain.jobs import utcnow
from shared.schemas.usage import Meter
from tests.conftest import ledger_event
from tests.unit.billing_fakes import FlakyUsageLedger
from tests.unit.fakes import ACME, ADMIN, CHAT, EMBED, GLOBEX, SCORER, fake_app, logged_bodies, run_next, submit

EVER = ("2000-01-01", "2100-01-01")


def test_usage_from_the_log_is_billed_once_however_often_it_is_delivered() -> None:
    app = fake_app()
    submit(app, {"input": "a b c"})
    submit(app, {"prompt": "hi there", "max_tokens": 4}, CHAT)
    run_next(app)
    run_next(app)
    bodies = logged_bodies(app)
    assert app.billing.ingest_usage(bodies) == BatchOutcome(billed=3)
    assert app.billing.ingest_usage(bodies) == BatchOutcome(duplicates=3)
    assert app.billing.ingest_usage([bodies[0], bodies[0]]) == BatchOutcome(duplicates=2)
    report = app.billing.usage_report(ACME, *EVER, "month")
    assert {(line.deployment, line.meter, line.tokens) for line in report.items} == {
        (EMBED, Meter.INPUT_TOKENS, 3),
        (CHAT, Meter.INPUT_TOKENS, 2),
        (CHAT, Meter.OUTPUT_TOKENS, 4),
    }
    # 3 × 0.0001 + 2 × 0.0005 + 4 × 0.0015, per 1,000 tokens
    assert report.total_tokens == 9 and report.total_cost == Decimal("0.0000073")


def test_a_scoring_script_is_billed_by_the_request() -> None:
    app = fake_app()
    for _ in range(3):
        submit(app, {"data": 1}, SCORER)
        run_next(app)
    app.billing.ingest_usage(logged_bodies(app))
    report = app.billing.usage_report(ACME, *EVER, "day")
    assert report.total_requests == 3 and report.total_tokens == 0


def test_bad_events_are_dead_lettered_and_the_good_ones_billed() -> None:
    app = fake_app()
    submit(app, {"input": "a"})
    run_next(app)
    (good,) = logged_bodies(app)
    outcome = app.billing.ingest_usage([b"not json", good, '{"id": "x"}'])
    assert outcome == BatchOutcome(billed=1, dead_lettered=2)
    assert len(app.blobs.list_keys(DEAD_LETTER_PREFIX, 10)) == 2
    assert app.billing.usage_report(ACME, *EVER, "month").total_tokens == 1


def test_a_batch_kept_through_a_ledger_outage_is_billed_by_the_replay() -> None:
    ledger = FlakyUsageLedger()
    app = fake_app(ledger=ledger)
    submit(app, {"input": "a b"})
    run_next(app)
    bodies = logged_bodies(app)
    ledger.failures = [StorageUnavailable("ledger down")] * app.settings.usage_ingest_attempts
    assert app.billing.ingest_usage(bodies) == BatchOutcome(kept_for_replay=1)  # the trigger checkpoints anyway
    assert len(app.blobs.list_keys(REPLAY_PREFIX, 10)) == 1 and ledger.billed_tokens() == 0
    ledger.failures = [StorageUnavailable("still down")]
    assert app.billing.replay_kept_usage() == ReplayOutcome(left=1)
    assert app.billing.replay_kept_usage() == ReplayOutcome(batches=1, billed=1)
    assert app.blobs.list_keys(REPLAY_PREFIX, 10) == [] and ledger.billed_tokens() == 2
    assert app.billing.ingest_usage(bodies) == BatchOutcome(duplicates=1)  # a late redelivery: still once
    assert app.billing.replay_kept_usage() == ReplayOutcome()


def _bill(app: Inferq, tenant: str, tokens: int, when: datetime | None = None) -> None:
    """Usage straight into the ledger, as the billing consumer would have put it there."""
    app.ledger.ingest([ledger_event(f"job-{tenant}-{tokens}", tenant, tokens, when or utcnow(), deployment=EMBED)])


def test_a_tenant_reads_its_own_usage_and_nobody_elses() -> None:
    app = fake_app()
    _bill(app, "acme", 7)
    _bill(app, "globex", 11)
    assert app.billing.usage_report(ACME, *EVER, "hour").total_tokens == 7
    assert app.billing.usage_report(ACME, *EVER, "hour", tenant="acme").total_tokens == 7
    assert app.billing.usage_report(GLOBEX, *EVER, "hour").total_tokens == 11
    with pytest.raises(Forbidden):
        app.billing.usage_report(ACME, *EVER, "hour", tenant="globex")
    with pytest.raises(Forbidden):
        app.billing.metering_records(ACME, *EVER, tenant="globex")


def test_an_admin_names_the_tenant_whose_usage_it_reads() -> None:
    app = fake_app()
    _bill(app, "acme", 7)
    _bill(app, "globex", 11)
    report = app.billing.usage_report(ADMIN, *EVER, "month", tenant="globex")
    assert (report.tenant, report.total_tokens) == ("globex", 11)
    with pytest.raises(InvalidInput) as caught:
        app.billing.usage_report(ADMIN, *EVER, "month")
    assert caught.value.loc == ("query", "tenant")
    with pytest.raises(NotFound):
        app.billing.usage_report(ADMIN, *EVER, "month", tenant="initech")


def test_a_tenant_key_that_is_also_an_admin_key_reads_its_own_usage_by_default() -> None:
    app = fake_app()
    _bill(app, "acme", 7)
    _bill(app, "globex", 11)
    both = Caller("acme", is_admin=True)
    assert app.billing.usage_report(both, *EVER, "month").total_tokens == 7
    assert app.billing.usage_report(both, *EVER, "month", tenant="globex").total_tokens == 11


def test_metering_records_cover_closed_hours_of_the_callers_tenant_or_all_for_an_admin() -> None:
    app = fake_app()
    earlier = utcnow() - timedelta(hours=3)
    _bill(app, "acme", 1500, earlier)
    _bill(app, "globex", 20, earlier)
    _bill(app, "acme", 9)  # this hour: not closed yet
    (mine,) = app.billing.metering_records(ACME, *EVER)
    assert mine["meter"] == {"name": f"inferq.{EMBED}.input_tokens", "quantity": Decimal("1.5"), "unit": "1K tokens"}
    assert mine["containerId"] == "acme"
    everyone = app.billing.metering_records(ADMIN, *EVER)
    assert sorted(r["containerId"] for r in everyone) == ["acme", "globex"]
    assert [r["containerId"] for r in app.billing.metering_records(ADMIN, *EVER, tenant="globex")] == ["globex"]


def test_the_deployments_view_is_for_admin_keys_and_counts_the_jobs_outcomes() -> None:
    app = fake_app()
    submit(app, {"input": "a b"})
    run_next(app)
    with pytest.raises(Forbidden):
        app.billing.deployments_view(ACME, None, None)
    view = app.billing.deployments_view(ADMIN, None, None)
    (endpoint,) = [e for e in view["endpoints"] if e["name"] == EMBED]
    (live,) = [d for d in endpoint["deployments"] if d["name"] == EMBED]
    assert (live["requests"], live["tokens"], live["errors"]) == (1, 2, 0)
    with pytest.raises(InvalidInput):
        app.billing.deployments_view(ADMIN, "2024-02-01", "2024-01-01")


def test_usage_report_arguments_are_checked() -> None:
    app = fake_app()
    with pytest.raises(InvalidInput):
        app.billing.usage_report(ACME, *EVER, "week")
    with pytest.raises(InvalidInput):
        app.billing.usage_report(ACME, "2024-02-01", "2024-01-01", "day")
    assert app.billing.usage_report(ACME, datetime(2024, 1, 1, tzinfo=UTC).isoformat(), None, "day").items == ()
