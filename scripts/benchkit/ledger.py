"""Usage ledger rows: usage events per second into the embedded SQLite ledger, in a temp dir, on one core (target
≥ 50,000/s; one Event Hubs throughput unit takes 1,000 events/s in). New ids, all duplicates (a replayed stream),
half duplicates, and the billing consumer's whole path (JSON bodies parsed, then ingested)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from benchkit.table import Table

T0 = datetime(2024, 5, 1, tzinfo=UTC)
TARGET = 50_000


def ledger_table(n: int, batches: list[int]) -> Table:
    # Imported here: the bench's other workloads must not depend on these module paths.
    from shared.adapters.files import FileBlobStore
    from shared.adapters.sqlite.db import SqliteDatabase
    from shared.adapters.sqlite.ledger import SqliteUsageLedger
    from shared.application import usage_ingest
    from shared.domain.config import Meter
    from shared.schemas.usage import usage_event

    def events(count: int, prefix: str) -> list[Any]:
        """Jobs of several tenants and deployments, spread over a day, as the workers publish them."""
        return [
            usage_event(
                job_id=f"{prefix}{i:032x}",
                tenant=f"tenant-{i % 7}",
                endpoint=f"deployment-{i % 3}",
                deployment=f"deployment-{i % 3}",
                model="model",
                meter=Meter.INPUT_TOKENS if i % 4 else Meter.OUTPUT_TOKENS,
                tokens=(i * 7919) % 4096,
                time=T0 + timedelta(seconds=i * 86400 // count),
            )
            for i in range(count)
        ]

    new = events(n, "job")
    half = new[: n // 2]
    mixed = [e for pair in zip(half, events(n // 2, "new"), strict=True) for e in pair]  # every other one is old
    bodies = [e.model_dump_json() for e in new]
    table = Table(f"Usage ledger (SQLite, one core, {n:,} events per row)", ["row", *(f"batch {b}" for b in batches)])
    worst = float("inf")
    with _one_core():
        for label, kind in (
            ("ledger.ingest, new ids", "new"),
            ("ledger.ingest, all duplicates (a replay)", "dup"),
            ("ledger.ingest, half duplicates", "mixed"),
            ("consumer: parse JSON + ingest, new ids", "bodies"),
        ):
            rates = []
            for batch in batches:
                with tempfile.TemporaryDirectory() as tmp:
                    ledger = SqliteUsageLedger(SqliteDatabase(Path(tmp) / "ledger.sqlite3"))
                    if kind == "new":
                        rates.append(_rate(ledger.ingest, new, batch))
                    elif kind == "dup":
                        ledger.ingest(new)
                        rates.append(_rate(ledger.ingest, new, batch))
                    elif kind == "mixed":
                        ledger.ingest(half)
                        rates.append(_rate(ledger.ingest, mixed, batch))
                    else:
                        consume = partial(usage_ingest.ingest, ledger, FileBlobStore(Path(tmp) / "blobs"))
                        rates.append(_rate(consume, bodies, batch))
            if kind != "bodies":
                worst = min(worst, *rates)
            table.add(label, *(f"{r:,.0f}/s" for r in rates))
    table.notes.append(f"slowest ledger row: {worst:,.0f} events/s (target ≥ {TARGET:,} on one core)")
    return table


def _rate(run: Callable[[Sequence[Any]], object], items: Sequence[Any], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(items), batch):
        run(items[i : i + batch])
    return len(items) / (time.perf_counter() - start)


@contextmanager
def _one_core() -> Iterator[None]:
    """Pin this process to one core for the block (the target is per core), then give the others back."""
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, cores)
