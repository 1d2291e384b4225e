"""Ingesting a batch of usage events: bad events are dead-lettered with their reason, the rest billed once.

The Event Hub trigger checkpoints whatever the function does, so nothing here may rely on redelivery: a
transient ledger failure is retried (bounded), then the batch is kept for replay.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from shared.errors import TransientError
from shared.jobs import utcnow
from shared.ports import BlobStore, UsageLedger
from shared.schemas.usage import UsageEvent

log = logging.getLogger(__name__)

DEAD_LETTER_PREFIX = "deadletter/usage"
REPLAY_PREFIX = "replay/usage"


@dataclass(frozen=True)
class BatchOutcome:
    billed: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    kept_for_replay: int = 0


def ingest(
    ledger: UsageLedger, blobs: BlobStore, bodies: Sequence[str | bytes], attempts: int = 3, backoff_s: float = 0.2
) -> BatchOutcome:
    events: list[UsageEvent] = []
    dead = 0
    for body in bodies:
        try:
            events.append(UsageEvent.model_validate_json(body))
        except ValidationError as exc:
            dead += 1
            _keep(blobs, DEAD_LETTER_PREFIX, {"reason": _reason(exc), "body": _text(body)})
    if not events:
        return BatchOutcome(dead_lettered=dead)
    for attempt in range(1, attempts + 1):
        try:
            result = ledger.ingest(events)
            return BatchOutcome(billed=result.billed, duplicates=result.duplicates, dead_lettered=dead)
        except TransientError as exc:
            log.warning("ledger unavailable (attempt %d of %d): %s", attempt, attempts, exc)
            if attempt < attempts:
                time.sleep(backoff_s * attempt)
            else:
                _keep(blobs, REPLAY_PREFIX, {"reason": str(exc), "bodies": [e.model_dump(mode="json") for e in events]})
    return BatchOutcome(dead_lettered=dead, kept_for_replay=len(events))


def _keep(blobs: BlobStore, prefix: str, record: dict[str, object]) -> None:
    record["time"] = utcnow().isoformat()
    key = f"{prefix}/{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex}.json"
    blobs.put(key, json.dumps(record).encode("utf-8"))


def _reason(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())


def _text(body: str | bytes) -> str:
    return body if isinstance(body, str) else body.decode("utf-8", errors="replace")
