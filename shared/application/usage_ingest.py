"""Ingesting a batch of usage events: bad events are dead-lettered with their reason, the rest billed once.

The Event Hub trigger checkpoints whatever the function does, so nothing here may rely on redelivery: a
transient ledger failure is retried (bounded), then the batch is kept in blobs, and `replay` bills it later.
Replaying is safe at any time: the ledger dedupes by event id, so a kept batch billed twice counts once.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError

from shared import telemetry
from shared.application import journal
from shared.domain.errors import NotFound, TransientError
from shared.domain.jobs import utcnow
from shared.domain.ports import BlobStore, UsageLedger
from shared.schemas.usage import UsageEvent

log = logging.getLogger(__name__)

DEAD_LETTER_PREFIX = "deadletter/usage/"
REPLAY_PREFIX = "replay/usage/"
_EVENTS = TypeAdapter(list[UsageEvent])


@dataclass(frozen=True)
class BatchOutcome:
    billed: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    kept_for_replay: int = 0


@dataclass(frozen=True)
class ReplayOutcome:
    batches: int = 0
    billed: int = 0
    duplicates: int = 0
    left: int = 0  # batches still kept (the ledger is still unavailable, or refuses them)


def ingest(
    ledger: UsageLedger,
    blobs: BlobStore,
    bodies: Sequence[str | bytes],
    attempts: int = 3,
    backoff_s: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
    traceparents: Sequence[str | None] | None = None,
) -> BatchOutcome:
    """`traceparents` (one per body, when known): the traces that produced the events, which the ingest continues."""
    with telemetry.billing_spans(traceparents) as spans:
        events: list[UsageEvent] = []
        rejected: list[tuple[str | bytes, str]] = []
        for body in bodies:
            try:
                events.append(UsageEvent.model_validate_json(body))
            except ValidationError as exc:
                rejected.append((body, _reason(exc)))
        billed = _bill(ledger, blobs, events, attempts, backoff_s, sleep) if events else BatchOutcome()
        for body, reason in rejected:  # after billing: a dead-letter store that fails must not cost the good events
            dead_letter(blobs, reason, _text(body))
        outcome = BatchOutcome(billed.billed, billed.duplicates, len(rejected), billed.kept_for_replay)
        for span in spans:
            span.set_attributes({f"inferq.billing.{k}": v for k, v in vars(outcome).items()})
        return outcome


def replay(ledger: UsageLedger, blobs: BlobStore, limit: int = 100) -> ReplayOutcome:
    """Bill the batches `ingest` kept, oldest first; a batch's blob is deleted only once it is in the ledger."""
    keys = blobs.list_keys(REPLAY_PREFIX, limit)
    batches = billed = duplicates = left = 0
    for done, key in enumerate(keys):
        try:
            data = blobs.get(key)
        except NotFound:
            continue  # another replayer finished it
        try:
            events = _EVENTS.validate_python(json.loads(data)["events"])
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            dead_letter(blobs, f"unreadable kept batch {key}: {exc}", _text(data))
            blobs.delete(key)
            continue
        try:
            result = ledger.ingest(events)
        except TransientError as exc:
            log.warning("replay stopped, the ledger is still unavailable: %s", exc)
            return ReplayOutcome(batches, billed, duplicates, left=left + len(keys) - done)
        except Exception:
            # Refused for a reason retrying now won't fix (a bug, a row the store refuses): keep it for a later
            # replay (after a fix), and go on: one such batch must not hold back every batch kept after it.
            log.exception("replay: the ledger refused kept batch %s; it stays kept", key)
            left += 1
            continue
        blobs.delete(key)
        batches, billed, duplicates = batches + 1, billed + result.billed, duplicates + result.duplicates
    return ReplayOutcome(batches, billed, duplicates, left)


@dataclass(frozen=True)
class DeadLetter:
    key: str
    reason: str
    body: str
    time: str = ""


@dataclass(frozen=True)
class LetterOutcome:
    """What replaying one dead letter did: billed (or a duplicate, or kept for replay), else why it stays."""

    outcome: BatchOutcome = BatchOutcome()
    invalid: str = ""  # still not a valid event: the reason; the dead letter stays


def dead_letters(blobs: BlobStore, limit: int = 1000) -> list[DeadLetter]:
    """The dead-lettered usage events, oldest first, for an operator to read (`inferq deadletters list`)."""
    letters = []
    for key in blobs.list_keys(DEAD_LETTER_PREFIX, limit):
        try:
            data = blobs.get(key)
        except NotFound:
            continue  # replayed meanwhile
        try:
            record = json.loads(data)
            letters.append(DeadLetter(key, str(record["reason"]), str(record["body"]), str(record.get("time", ""))))
        except (ValueError, KeyError, TypeError):
            letters.append(DeadLetter(key, "not a dead-letter record", _text(data)))
    return letters


def kept_batches(blobs: BlobStore, limit: int = 1000) -> list[str]:
    """The keys of the batches kept while the ledger was unavailable, which `replay` bills."""
    return blobs.list_keys(REPLAY_PREFIX, limit)


def replay_dead_letter(ledger: UsageLedger, blobs: BlobStore, letter: DeadLetter) -> LetterOutcome:
    """Bill a dead letter whose body is now a valid event (fixed by hand, or refused by an older check), once: the
    ledger dedupes by event id. Billed or kept for replay, its blob is deleted; still invalid, it stays."""
    try:
        event = UsageEvent.model_validate_json(letter.body)
    except ValidationError as exc:
        return LetterOutcome(invalid=_reason(exc))
    outcome = _bill(ledger, blobs, [event], 1, 0, time.sleep)  # not billed: kept for replay (or it raises)
    blobs.delete(letter.key)
    return LetterOutcome(outcome)


def dead_letter(blobs: BlobStore, reason: str, body: str) -> None:
    try:
        _put(blobs, DEAD_LETTER_PREFIX, {"reason": reason, "body": body})
    except Exception:
        # The log is the last place the event survives: it carries the body for an operator to recover.
        log.exception("could not dead-letter a usage event (%s); body: %s", reason, body)
    else:
        log.warning("dead-lettered a usage event: %s", reason)
    telemetry.usage_dead_lettered()


def _bill(
    ledger: UsageLedger,
    blobs: BlobStore,
    events: list[UsageEvent],
    attempts: int,
    backoff_s: float,
    sleep: Callable[[float], None],
) -> BatchOutcome:
    reason = ""
    for attempt in range(1, attempts + 1):
        try:
            result = ledger.ingest(events)
            journal.billed(events)
            telemetry.usage_ingested(events)
            return BatchOutcome(billed=result.billed, duplicates=result.duplicates)
        except TransientError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("ledger unavailable (attempt %d of %d): %s", attempt, attempts, exc)
            if attempt < attempts:
                sleep(backoff_s * attempt)
        except Exception as exc:
            # Not transient (a bug, a row the store refuses): retrying now won't help, dropping would lose it.
            reason = f"{type(exc).__name__}: {exc}"
            log.exception("ledger refused a usage batch; keeping it for replay")
            break
    record: dict[str, object] = {"reason": reason, "events": [e.model_dump(mode="json") for e in events]}
    try:
        key = _put(blobs, REPLAY_PREFIX, record)
    except Exception:
        log.critical("could not keep a usage batch for replay; events: %s", json.dumps(record["events"]))
        raise
    log.warning("kept %d usage events for replay in %s (%s)", len(events), key, reason)
    return BatchOutcome(kept_for_replay=len(events))


def _put(blobs: BlobStore, prefix: str, record: dict[str, object]) -> str:
    now = utcnow()
    key = f"{prefix}{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex}.json"  # key order is time order
    blobs.put(key, json.dumps({**record, "time": now.isoformat()}).encode("utf-8"))
    return key


def _reason(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())


def _text(body: str | bytes) -> str:
    return body if isinstance(body, str) else body.decode("utf-8", errors="replace")
