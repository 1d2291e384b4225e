"""Fakes and a config for the billing unit tests (no I/O)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from shared.domain.billing import hour_of
from shared.domain.config import AppConfig
from shared.domain.errors import NotFound
from shared.domain.ports import IngestResult, UsageTotal
from shared.schemas.usage import UsageEvent

CONFIG = AppConfig.model_validate(
    {
        "currency": "EUR",
        "tenants": [{"name": "acme", "monthly_budget": "1.00"}, {"name": "globex"}],
        "deployments": [
            {
                "name": "embed",
                "kind": "embeddings",
                "model_name": "m",
                "model": {"source": "models/x", "files": {}},
                "prices": {"input_tokens": "0.0001"},
            },
            {
                "name": "chat",
                "kind": "chat-completion",
                "model_name": "c",
                "model": {"source": "models/y", "files": {}},
                "prices": {"input_tokens": "0.0005", "output_tokens": "0.0015"},
            },
            {
                "name": "scorer",
                "kind": "score",
                "model_name": "s",
                "model": {"source": "models/z", "files": {}},
                "script": "score.py",
                "prices": {"requests": "0.02"},
            },
        ],
    }
)


class FakeUsageLedger:
    """Dedupe + hourly totals in memory; `failures` is a list of exceptions raised by the next ingests."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.hourly: dict[tuple[str, str, str, datetime], int] = defaultdict(int)
        self.failures: list[Exception] = []
        self.ingests = 0
        self.reads = 0

    def ingest(self, events: Sequence[UsageEvent]) -> IngestResult:
        self.ingests += 1
        if self.failures:
            raise self.failures.pop(0)
        billed = duplicates = 0
        for e in events:
            if e.id in self.ids:
                duplicates += 1
                continue
            self.ids.add(e.id)
            if not e.mirrored:
                billed += 1
                self.hourly[(e.tenant, e.deployment, e.meter.value, hour_of(e.time))] += e.tokens
        return IngestResult(billed, duplicates)

    def hourly_totals(self, tenant: str | None, start: datetime, end: datetime) -> list[UsageTotal]:
        self.reads += 1
        if self.failures:
            raise self.failures.pop(0)
        return sorted(
            (
                UsageTotal(hour, t, d, m, n)
                for (t, d, m, hour), n in self.hourly.items()
                if (tenant is None or t == tenant) and hour_of(start) <= hour < end
            ),
            key=lambda u: (u.period_start, u.tenant, u.deployment, u.meter),
        )


class MemoryBlobStore:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.fail_puts = False

    def put(self, key: str, data: bytes) -> None:
        if self.fail_puts:
            raise OSError("disk full")
        self.blobs[key] = data

    def get(self, key: str) -> bytes:
        try:
            return self.blobs[key]
        except KeyError:
            raise NotFound(key) from None

    def delete(self, key: str) -> None:
        self.blobs.pop(key, None)

    def list_keys(self, prefix: str, limit: int) -> list[str]:
        return sorted(k for k in self.blobs if k.startswith(prefix))[:limit]
