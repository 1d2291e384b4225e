"""A config and failure-injecting wrappers around the in-memory ledger and blob store, for the billing unit
tests (no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from shared.adapters.memory import MemoryBlobStore, MemoryUsageLedger
from shared.domain.config import AppConfig
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
                "code": {"source": "models/z", "files": {"score.py": "0" * 64}},
                "prices": {"requests": "0.02"},
            },
        ],
    }
)


class FlakyUsageLedger(MemoryUsageLedger):
    """The in-memory ledger, counting calls; `failures` are raised, in order, by the next calls."""

    def __init__(self) -> None:
        super().__init__()
        self.failures: list[Exception] = []
        self.ingests = 0
        self.reads = 0

    def ingest(self, events: Sequence[UsageEvent]) -> IngestResult:
        self.ingests += 1
        self._fail()
        return super().ingest(events)

    def hourly_totals(self, tenant: str | None, start: datetime, end: datetime) -> list[UsageTotal]:
        self.reads += 1
        self._fail()
        return super().hourly_totals(tenant, start, end)

    def billed_tokens(self) -> int:
        """Every tenant's billed total, of all time (not a read the tests count)."""
        everything = super().hourly_totals(None, datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))
        return sum(t.tokens for t in everything)

    def _fail(self) -> None:
        if self.failures:
            raise self.failures.pop(0)


class FlakyBlobStore(MemoryBlobStore):
    """The in-memory blob store, whose writes fail while `fail_puts` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_puts = False

    def put(self, key: str, data: bytes) -> None:
        if self.fail_puts:
            raise OSError("disk full")
        super().put(key, data)

    def keys(self) -> list[str]:
        return self.list_keys("", 1_000_000)
