"""UsageLedger contract (fake, SQLite and Azure Table storage): each event billed once however often and in whatever
batches it comes, dedupe across hours, exact hourly totals, large batches, and concurrent consumers."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from shared.domain.ports import IngestResult, UsageLedger
from shared.schemas.usage import Meter, UsageEvent
from tests.conftest import ledger_event

T0 = datetime(2024, 5, 1, 10, 15, tzinfo=UTC)
HOUR = timedelta(hours=1)


def event(job: str, tokens: int, *, tenant: str = "acme", time: datetime = T0, deployment: str = "minilm",
          meter: Meter = Meter.INPUT_TOKENS, mirrored: bool = False) -> UsageEvent:  # fmt: skip
    return ledger_event(job, tenant, tokens, time, deployment=deployment, meter=meter, mirrored=mirrored)


def totals(ledger: UsageLedger, tenant: str | None = "acme", start: datetime = T0 - 24 * HOUR,
           end: datetime = T0 + 24 * HOUR) -> dict[tuple[str, str, str, str], int]:  # fmt: skip
    return {
        (t.period_start.isoformat(), t.tenant, t.deployment, t.meter): t.tokens
        for t in ledger.hourly_totals(tenant, start, end)
    }


def test_an_event_is_billed_once_however_often_it_arrives(ledger: UsageLedger) -> None:
    batch = [event("job_1", 10), event("job_2", 5)]
    first = ledger.ingest(batch)
    assert (first.billed, first.duplicates) == (2, 0)
    again = ledger.ingest([*batch, event("job_3", 1)])
    assert (again.billed, again.duplicates) == (1, 2)
    assert totals(ledger) == {("2024-05-01T10:00:00+00:00", "acme", "minilm", "input_tokens"): 16}


def test_a_repeat_inside_one_batch_counts_once(ledger: UsageLedger) -> None:
    result = ledger.ingest([event("job_1", 10), event("job_1", 10)])
    assert (result.billed, result.duplicates) == (1, 1)
    assert list(totals(ledger).values()) == [10]


def test_the_same_event_with_another_time_is_still_a_duplicate(ledger: UsageLedger) -> None:
    ledger.ingest([event("job_1", 10, time=T0)])
    later = ledger.ingest([event("job_1", 10, time=T0 + 3 * HOUR)])  # a redelivery stamped in another hour
    assert (later.billed, later.duplicates) == (0, 1)
    assert totals(ledger) == {("2024-05-01T10:00:00+00:00", "acme", "minilm", "input_tokens"): 10}


def test_mirrored_events_are_recorded_but_not_billed(ledger: UsageLedger) -> None:
    result = ledger.ingest([event("job_m", 99, mirrored=True), event("job_b", 1)])
    assert (result.billed, result.duplicates) == (1, 0)
    assert ledger.ingest([event("job_m", 99, mirrored=True)]).duplicates == 1
    assert list(totals(ledger).values()) == [1]


def test_totals_are_per_tenant_deployment_meter_and_event_hour(ledger: UsageLedger) -> None:
    ledger.ingest(
        [
            event("a", 1),
            event("b", 2, time=T0 + HOUR),
            event("c", 4, meter=Meter.OUTPUT_TOKENS),
            event("d", 8, deployment="other"),
            event("e", 16, tenant="globex"),
            event("f", 32, time=T0 - 2 * HOUR),
        ]
    )
    assert totals(ledger) == {
        ("2024-05-01T08:00:00+00:00", "acme", "minilm", "input_tokens"): 32,
        ("2024-05-01T10:00:00+00:00", "acme", "minilm", "input_tokens"): 1,
        ("2024-05-01T10:00:00+00:00", "acme", "minilm", "output_tokens"): 4,
        ("2024-05-01T10:00:00+00:00", "acme", "other", "input_tokens"): 8,
        ("2024-05-01T11:00:00+00:00", "acme", "minilm", "input_tokens"): 2,
    }
    assert totals(ledger, "globex") == {("2024-05-01T10:00:00+00:00", "globex", "minilm", "input_tokens"): 16}
    # [hour of start, end): the 10:00 hour starts before 10:30, the 11:00 hour does not
    window = totals(ledger, None, start=T0, end=T0.replace(minute=30))
    assert set(window) == {
        ("2024-05-01T10:00:00+00:00", "acme", "minilm", "input_tokens"),
        ("2024-05-01T10:00:00+00:00", "acme", "minilm", "output_tokens"),
        ("2024-05-01T10:00:00+00:00", "acme", "other", "input_tokens"),
        ("2024-05-01T10:00:00+00:00", "globex", "minilm", "input_tokens"),
    }
    assert totals(ledger, None, start=T0 + HOUR, end=T0.replace(minute=0) + HOUR) == {}


def test_a_large_batch_over_many_hours_and_deployments_is_billed_exactly(ledger: UsageLedger) -> None:
    # 260 events of one tenant: more than one entity-group transaction (100 operations) holds on Azure.
    events = [event(f"job_{i}", i, time=T0 + (i % 5) * HOUR, deployment=f"d{i % 3}") for i in range(260)]
    result = ledger.ingest(events)
    assert (result.billed, result.duplicates) == (260, 0)
    expected: dict[tuple[str, str, str, str], int] = {}
    for e in events:
        hour = e.time.replace(minute=0).isoformat()
        key = (hour, "acme", e.deployment, "input_tokens")
        expected[key] = expected.get(key, 0) + e.tokens
    assert totals(ledger) == expected
    replay = ledger.ingest(list(reversed(events)))
    assert (replay.billed, replay.duplicates) == (0, 260)
    assert totals(ledger) == expected


def test_concurrent_consumers_of_overlapping_batches_bill_each_event_once(ledger: UsageLedger) -> None:
    events = [event(f"job_{i}", 3, time=T0 + (i % 2) * HOUR, tenant=("acme", "globex")[i % 2 and i % 3 == 0])
              for i in range(120)]  # fmt: skip
    batches = []
    for seed in range(4):
        shuffled = list(events)
        random.Random(seed).shuffle(shuffled)
        batches.append(shuffled[: 90 + seed * 10])
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(ledger.ingest, batches))
    assert sum(r.billed for r in results) == 120
    assert sum(r.billed + r.duplicates for r in results) == sum(len(b) for b in batches)
    assert sum(totals(ledger, None).values()) == 3 * 120


def test_every_event_the_schema_accepts_is_ingested_even_the_largest(ledger: UsageLedger) -> None:
    # The schema is the ledger's input contract: what it accepts, every ledger must take (Table storage caps a
    # property at 64 KiB and a transaction at 4 MiB), so the billing consumer never keeps a batch it can't bill.
    bounds = {name: field.metadata for name, field in UsageEvent.model_fields.items() if field.annotation is str}
    longest: dict[str, int] = {}
    for name, metadata in bounds.items():
        limits = [m.max_length for m in metadata if getattr(m, "max_length", None) is not None]
        assert limits, f"UsageEvent.{name} has no max_length"
        longest[name] = limits[0]
    tenant = "t" * longest["tenant"]
    events = []
    for i in range(100):  # one entity-group transaction's worth, every string at its longest
        job = f"{i:03d}".ljust(longest["job_id"], "j")
        fields = {**{k: "x" * n for k, n in longest.items()}, "id": f"{i:03d}".ljust(longest["id"], "e")}
        events.append(UsageEvent(**{**fields, "tenant": tenant, "job_id": job, "meter": Meter.INPUT_TOKENS,
                                    "tokens": 7, "time": T0}))  # fmt: skip
    assert ledger.ingest(events) == IngestResult(billed=100, duplicates=0)
    assert ledger.ingest(events[:3]) == IngestResult(billed=0, duplicates=3)
    assert totals(ledger, tenant) == {("2024-05-01T10:00:00+00:00", tenant, "x" * longest["deployment"],
                                       "input_tokens"): 700}  # fmt: skip
