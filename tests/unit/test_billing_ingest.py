"""The billing consumer's batch handling: dead letters with reasons, bounded retries, kept batches and replay."""

import json
from datetime import UTC, datetime

import pytest

from shared.application import usage_ingest as billing_ingest
from shared.domain.errors import StorageUnavailable
from shared.schemas.usage import Meter, usage_event
from tests.unit.billing_fakes import FlakyBlobStore, FlakyUsageLedger

T0 = datetime(2024, 5, 1, 13, 5, tzinfo=UTC)


def body(job: str, tokens: object = 10, **changes: object) -> str:
    event = usage_event(
        job_id=job,
        tenant="acme",
        endpoint="embed",
        deployment="embed",
        model="m",
        meter=Meter.INPUT_TOKENS,
        tokens=0,
        time=T0,
    )
    return json.dumps({**event.model_dump(mode="json"), "tokens": tokens, **changes})


def kept(blobs: FlakyBlobStore, prefix: str) -> list[dict]:
    return [json.loads(blobs.get(k)) for k in blobs.list_keys(prefix, 100)]


def ingest(ledger: FlakyUsageLedger, blobs: FlakyBlobStore, bodies: list) -> billing_ingest.BatchOutcome:
    return billing_ingest.ingest(ledger, blobs, bodies, attempts=3, backoff_s=0, sleep=lambda _: None)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("{not json", "Invalid JSON"),
        (body("j9", tokens=-1), "tokens"),
        (body("j9", tokens=1.5), "tokens"),
        (body("j9", tokens="12"), "tokens"),  # tokens are exact integers, not strings to coerce
        (body("j9", time="2024-05-01T13:00:00"), "time"),  # no zone: which hour would it bill?
        (body("j9", meter="images"), "meter"),
        (body("j9", mirrored="yes"), "mirrored"),
        (body("j9", tokens=10**13), "tokens"),
        # Bigger than a Table storage property or batch takes: refused here, not by the Azure ledger (which would
        # keep the whole batch, every good event with it, and block replay)
        (body("j9", model="m" * 100_000), "model"),
        (body("j9", deployment="d" * 100_000), "deployment"),
        (b"\xff\xfe", "Invalid JSON"),
    ],
)
def test_a_bad_event_is_dead_lettered_with_its_reason_and_the_rest_billed(bad: str | bytes, reason: str) -> None:
    ledger, blobs = FlakyUsageLedger(), FlakyBlobStore()
    outcome = ingest(ledger, blobs, [body("j1"), bad, body("j2")])
    assert outcome == billing_ingest.BatchOutcome(billed=2, dead_lettered=1)
    (letter,) = kept(blobs, billing_ingest.DEAD_LETTER_PREFIX)
    assert reason in letter["reason"]
    assert letter["body"] == (bad if isinstance(bad, str) else bad.decode("utf-8", errors="replace"))


def test_a_transient_ledger_failure_is_retried_within_the_call() -> None:
    ledger, blobs = FlakyUsageLedger(), FlakyBlobStore()
    ledger.failures = [StorageUnavailable("busy"), StorageUnavailable("busy")]
    assert ingest(ledger, blobs, [body("j1")]) == billing_ingest.BatchOutcome(billed=1)
    assert ledger.ingests == 3 and not blobs.keys()


def test_after_the_last_attempt_the_batch_is_kept_and_replay_bills_it_once() -> None:
    ledger, blobs = FlakyUsageLedger(), FlakyBlobStore()
    ledger.failures = [StorageUnavailable("down")] * 3
    outcome = ingest(ledger, blobs, [body("j1"), body("j2", tokens=5)])
    assert outcome == billing_ingest.BatchOutcome(kept_for_replay=2)
    (batch,) = kept(blobs, billing_ingest.REPLAY_PREFIX)
    assert "down" in batch["reason"] and len(batch["events"]) == 2
    assert ledger.billed_tokens() == 0

    ledger.failures = [StorageUnavailable("still down")]
    assert billing_ingest.replay(ledger, blobs) == billing_ingest.ReplayOutcome(left=1)  # kept, not lost
    assert billing_ingest.replay(ledger, blobs) == billing_ingest.ReplayOutcome(batches=1, billed=2)
    assert not blobs.keys()
    assert ledger.billed_tokens() == 15
    assert billing_ingest.replay(ledger, blobs) == billing_ingest.ReplayOutcome()


def test_a_non_transient_ledger_error_keeps_the_batch_at_once() -> None:
    ledger, blobs = FlakyUsageLedger(), FlakyBlobStore()
    ledger.failures = [OverflowError("Python int too large to convert to SQLite INTEGER")]
    assert ingest(ledger, blobs, [body("j1")]) == billing_ingest.BatchOutcome(kept_for_replay=1)
    assert ledger.ingests == 1  # retrying a bug won't help
    assert "OverflowError" in kept(blobs, billing_ingest.REPLAY_PREFIX)[0]["reason"]


def test_a_batch_that_can_be_neither_billed_nor_kept_fails_loudly() -> None:
    ledger, blobs = FlakyUsageLedger(), FlakyBlobStore()
    ledger.failures = [StorageUnavailable("down")] * 3
    blobs.fail_puts = True
    with pytest.raises(OSError):
        ingest(ledger, blobs, [body("j1")])


def test_a_dead_letter_store_failure_does_not_cost_the_good_events() -> None:
    ledger, blobs = FlakyUsageLedger(), FlakyBlobStore()
    blobs.fail_puts = True
    assert ingest(ledger, blobs, [body("j1"), "nope"]) == billing_ingest.BatchOutcome(billed=1, dead_lettered=1)


def test_an_unreadable_kept_batch_is_dead_lettered_not_replayed_forever() -> None:
    ledger, blobs = FlakyUsageLedger(), FlakyBlobStore()
    blobs.put(f"{billing_ingest.REPLAY_PREFIX}broken.json", b"{}")
    assert billing_ingest.replay(ledger, blobs) == billing_ingest.ReplayOutcome()
    assert blobs.list_keys(billing_ingest.REPLAY_PREFIX, 10) == []
    (letter,) = kept(blobs, billing_ingest.DEAD_LETTER_PREFIX)
    assert "broken.json" in letter["reason"] and letter["body"] == "{}"


def test_a_kept_batch_the_ledger_refuses_does_not_block_the_batches_after_it() -> None:
    ledger, blobs = FlakyUsageLedger(), FlakyBlobStore()
    ledger.failures = [StorageUnavailable("down")] * 3 + [StorageUnavailable("down")] * 3
    ingest(ledger, blobs, [body("j1")])
    ingest(ledger, blobs, [body("j2", tokens=5)])
    assert len(kept(blobs, billing_ingest.REPLAY_PREFIX)) == 2

    ledger.failures = [OverflowError("a row the store refuses")]  # the oldest batch, every time it is tried
    outcome = billing_ingest.replay(ledger, blobs)
    assert outcome == billing_ingest.ReplayOutcome(batches=1, billed=1, left=1)  # the next one is billed
    assert ledger.billed_tokens() == 5
    (left,) = kept(blobs, billing_ingest.REPLAY_PREFIX)  # the refused one is still kept, not lost
    assert [e["job_id"] for e in left["events"]] == ["j1"]
    assert billing_ingest.replay(ledger, blobs) == billing_ingest.ReplayOutcome(batches=1, billed=1)
