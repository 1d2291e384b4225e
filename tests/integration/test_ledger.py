"""The UsageLedger contract: exact totals per tenant × deployment × meter × hour, each event id billed once,
atomic batches. Run against every adapter (the SQLite one here; others join the `ledger` fixture)."""

import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.sqlite.db import SqliteDatabase
from shared.adapters.sqlite.ledger import SqliteUsageLedger
from shared.domain import usage_report
from shared.domain.billing import Granularity, hour_of
from shared.domain.ports import UsageLedger
from shared.schemas.usage import Meter, UsageEvent
from tests.conftest import ledger_event
from tests.unit.billing_fakes import CONFIG

T0 = datetime(2024, 1, 31, 20, tzinfo=UTC)
ALL_TIME = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


@pytest.fixture(params=["sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[UsageLedger]:
    yield SqliteUsageLedger(SqliteDatabase(tmp_path / "ledger.sqlite3"))


def event(
    job: str,
    tokens: int,
    time: datetime,
    tenant: str = "acme",
    deployment: str = "embed",
    meter: Meter = Meter.INPUT_TOKENS,
    mirrored: bool = False,
) -> UsageEvent:
    return ledger_event(job, tenant, tokens, time, deployment=deployment, meter=meter, mirrored=mirrored)


def totals(ledger: UsageLedger, tenant: str | None = None) -> dict[tuple[str, str, str, datetime], int]:
    return {
        (t.tenant, t.deployment, t.meter, t.period_start): t.tokens for t in ledger.hourly_totals(tenant, *ALL_TIME)
    }


def in_batches(ledger: UsageLedger, events: list[UsageEvent], rng: random.Random) -> None:
    i = 0
    while i < len(events):
        size = rng.randint(1, 300)
        ledger.ingest(events[i : i + size])
        i += size


def test_random_events_total_exactly_what_the_client_sums(ledger: UsageLedger) -> None:
    rng = random.Random(20240131)
    events = [
        event(
            f"job{i}",
            rng.randint(0, 50_000),
            T0 + timedelta(seconds=rng.randint(-3 * 86400, 3 * 86400)),
            tenant=rng.choice(["acme", "globex", "initech"]),
            deployment=rng.choice(["embed", "chat"]),
            meter=rng.choice(list(Meter)),
            mirrored=rng.random() < 0.1,
        )
        for i in range(1000)
    ]
    in_batches(ledger, events, rng)
    expected = Counter[tuple[str, str, str, datetime]]()
    for e in events:
        if not e.mirrored:
            expected[(e.tenant, e.deployment, e.meter.value, hour_of(e.time))] += e.tokens
    assert totals(ledger) == dict(expected)
    for tenant in ("acme", "globex"):
        assert totals(ledger, tenant) == {k: v for k, v in expected.items() if k[0] == tenant}


def test_one_event_id_sent_a_thousand_times_counts_once(ledger: UsageLedger) -> None:
    rng = random.Random(7)
    first = event("job-x", 123, T0)
    copies = [first.model_copy(update={"time": T0 + timedelta(minutes=rng.randint(1, 5000))}) for _ in range(999)]
    others = [event(f"other{i}", 1, T0) for i in range(200)]
    rest = [*copies, *others]
    rng.shuffle(rest)
    stream = [first, *rest]  # the first copy arrives first; the rest interleave with other events
    batches: list[list[UsageEvent]] = []
    i = 0
    while i < len(stream):
        size = rng.randint(1, 50)
        batches.append(stream[i : i + size])
        i += size
    results = [ledger.ingest(b) for b in batches]
    assert sum(r.billed for r in results) == 201 and sum(r.duplicates for r in results) == 999
    assert totals(ledger) == {("acme", "embed", "input_tokens", T0): 123 + 200}  # the first copy's hour


def test_copies_within_one_batch_count_once(ledger: UsageLedger) -> None:
    e = event("job-1", 10, T0)
    result = ledger.ingest([e, e, e.model_copy(update={"time": T0 + timedelta(hours=5)})])
    assert (result.billed, result.duplicates) == (1, 2)
    assert totals(ledger) == {("acme", "embed", "input_tokens", T0): 10}


def test_mirrored_events_are_recorded_but_never_billed(ledger: UsageLedger) -> None:
    mirrored = event("job-m", 500, T0, mirrored=True)
    assert ledger.ingest([mirrored, event("job-1", 7, T0)]).billed == 1
    assert totals(ledger) == {("acme", "embed", "input_tokens", T0): 7}
    # Recorded: the same id arriving unflagged later is a duplicate, not a second chance to bill it.
    assert ledger.ingest([mirrored.model_copy(update={"mirrored": False})]).duplicates == 1
    assert totals(ledger) == {("acme", "embed", "input_tokens", T0): 7}


def test_a_crash_between_dedupe_and_aggregation_leaves_no_trace_and_a_retry_bills_once(tmp_path: Path) -> None:
    ledger = SqliteUsageLedger(SqliteDatabase(tmp_path / "ledger.sqlite3"))
    ledger.ingest([event("job-0", 1, T0)])
    batch = [event("job-1", 10, T0), event("job-2", 20, T0 + timedelta(hours=1))]

    def crash() -> None:
        raise RuntimeError("worker died mid-batch")

    with pytest.raises(RuntimeError):
        ledger.ingest_with(batch, before_commit=crash)
    assert totals(ledger) == {("acme", "embed", "input_tokens", T0): 1}
    retry = ledger.ingest(batch)  # had the ids survived the crash, this would bill nothing
    assert (retry.billed, retry.duplicates) == (2, 0)
    assert ledger.ingest(batch).duplicates == 2
    assert totals(ledger) == {
        ("acme", "embed", "input_tokens", T0): 11,
        ("acme", "embed", "input_tokens", T0 + timedelta(hours=1)): 20,
    }


def test_hour_day_and_month_boundaries(ledger: UsageLedger) -> None:
    midnight = datetime(2024, 2, 1, tzinfo=UTC)
    ledger.ingest([event("on-the-dot", 1000, midnight)])
    ledger.ingest([event("last-microsecond", 2000, midnight - timedelta(microseconds=1))])
    ledger.ingest([event("in-paris", 4000, datetime.fromisoformat("2024-02-01T00:30:00+01:00"))])  # 23:30 UTC
    ledger.ingest([event("later", 8000, midnight + timedelta(hours=5))])
    ledger.ingest([event("late", 16000, midnight + timedelta(minutes=59, seconds=59))])  # arrives after "later"
    assert totals(ledger) == {
        ("acme", "embed", "input_tokens", midnight - timedelta(hours=1)): 6000,
        ("acme", "embed", "input_tokens", midnight): 17000,
        ("acme", "embed", "input_tokens", midnight + timedelta(hours=5)): 8000,
    }

    def periods(granularity: Granularity, start: datetime = ALL_TIME[0], end: datetime = ALL_TIME[1]) -> dict:
        report = usage_report.build(ledger.hourly_totals("acme", start, end), CONFIG, "acme", start, end, granularity)
        return {line.period_start: line.tokens for line in report.items}

    assert periods(Granularity.DAY) == {datetime(2024, 1, 31, tzinfo=UTC): 6000, midnight: 25000}
    assert periods(Granularity.MONTH) == {datetime(2024, 1, 1, tzinfo=UTC): 6000, midnight: 25000}
    # Ranges are half-open on hours: [from's hour, to)
    assert periods(Granularity.MONTH, start=midnight) == {midnight: 25000}
    assert periods(Granularity.MONTH, end=midnight) == {datetime(2024, 1, 1, tzinfo=UTC): 6000}
    assert periods(Granularity.HOUR, midnight + timedelta(minutes=30), midnight + timedelta(hours=5, seconds=1)) == {
        midnight: 17000,
        midnight + timedelta(hours=5): 8000,
    }
    assert periods(Granularity.HOUR, midnight, midnight + timedelta(hours=5)) == {midnight: 17000}
