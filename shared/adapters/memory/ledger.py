"""The usage ledger in memory: event ids and hourly totals change under one lock, so a batch is either billed
whole, once, or not at all — the same step as `SqliteUsageLedger`'s transaction."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from shared.domain.billing import EPOCH, HOUR, hour_index
from shared.domain.ports import IngestResult, UsageTotal
from shared.schemas.usage import UsageEvent

_Key = tuple[int, str, str, str]  # (hour index, tenant, deployment, meter): sorts as the SQLite query orders


class MemoryUsageLedger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, UsageEvent] = {}  # every event id ever ingested, mirrored ones too
        self._hourly: Counter[_Key] = Counter()

    def ping(self) -> None:
        """Memory always answers."""

    def ingest(self, events: Sequence[UsageEvent]) -> IngestResult:
        return self.ingest_with(events, before_commit=None)

    def ingest_with(self, events: Sequence[UsageEvent], before_commit: Callable[[], None] | None) -> IngestResult:
        """`before_commit` (tests only) runs after the batch is deduplicated and before anything is kept:
        whatever it raises leaves the ledger as it was."""
        if not events:
            return IngestResult(billed=0, duplicates=0)
        with self._lock:
            new: dict[str, UsageEvent] = {}
            for e in events:  # first copy wins within the batch
                if e.id not in self._events and e.id not in new:
                    new[e.id] = e
            added: Counter[_Key] = Counter()
            for e in new.values():
                if not e.mirrored:
                    added[(hour_index(e.time), e.tenant, e.deployment, e.meter.value)] += e.tokens
            if before_commit is not None:
                before_commit()
            self._events.update(new)
            self._hourly.update(added)
        billed = sum(not e.mirrored for e in new.values())
        return IngestResult(billed=billed, duplicates=len(events) - len(new))

    def hourly_totals(self, tenant: str | None, start: datetime, end: datetime) -> list[UsageTotal]:
        """Totals of the hours that start in [hour of `start`, `end`)."""
        first, end = hour_index(start), end.astimezone(UTC)
        with self._lock:
            rows = sorted(
                (key, tokens)
                for key, tokens in self._hourly.items()
                if first <= key[0] and EPOCH + key[0] * HOUR < end and (tenant is None or key[1] == tenant)
            )
        return [UsageTotal(EPOCH + hour * HOUR, t, deployment, meter, n) for (hour, t, deployment, meter), n in rows]
