"""Usage ledger benchmark: usage events per second into the embedded SQLite ledger, in a temp dir, on one core.

Rows: new ids, all duplicates (a replayed stream), half duplicates, and the billing consumer's whole path
(JSON bodies parsed, then ingested) — each at several batch sizes. Prints a table; asserts nothing.
    .venv/bin/python scripts/bench_ledger.py [--events 200000] [--batches 64,256,1024] [--prefill 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.adapters.files import FileBlobStore  # noqa: E402
from shared.adapters.sqlite.db import SqliteDatabase  # noqa: E402
from shared.adapters.sqlite.ledger import SqliteUsageLedger  # noqa: E402
from shared.application import usage_ingest as billing_ingest  # noqa: E402
from shared.schemas.usage import (  # noqa: E402
    Meter,  # noqa: E402
    UsageEvent,
    usage_event,
)

T0 = datetime(2024, 5, 1, tzinfo=UTC)
TARGET = 50_000


def events(n: int, prefix: str) -> list[UsageEvent]:
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
            time=T0 + timedelta(seconds=i * 86400 // n),
        )
        for i in range(n)
    ]


def fresh_ledger(directory: Path, prefill: int) -> SqliteUsageLedger:
    ledger = SqliteUsageLedger(SqliteDatabase(directory / "ledger.sqlite3"))
    for i in range(0, prefill, 4096):
        ledger.ingest(events(min(4096, prefill - i), f"pre{i:09d}-"))
    return ledger


def rate(run: Callable[[Sequence[Any]], object], items: Sequence[Any], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(items), batch):
        run(items[i : i + batch])
    return len(items) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batches", default="64,256,1024")
    parser.add_argument("--prefill", type=int, default=0, help="event ids already in the ledger before each row")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the target says
    batches = [int(b) for b in args.batches.split(",")]
    n = args.events
    batch_events = events(n, "job")
    half = batch_events[: n // 2]
    mixed = [e for pair in zip(half, events(n // 2, "new"), strict=True) for e in pair]  # every other one is old
    bodies = [e.model_dump_json() for e in batch_events]

    print(f"usage ledger (SQLite, WAL), {n:,} events per row, {args.prefill:,} ids already in the ledger")
    print(f"{'row':<44}" + "".join(f"{'batch ' + str(b):>14}" for b in batches))
    rows: list[tuple[str, list[float]]] = []
    for label, kind in (
        ("ledger.ingest, new ids", "new"),
        ("ledger.ingest, all duplicates (a replay)", "dup"),
        ("ledger.ingest, half duplicates", "mixed"),
        ("consumer: parse JSON + ingest, new ids", "bodies"),
    ):
        rates = []
        for batch in batches:
            with tempfile.TemporaryDirectory() as tmp:
                ledger = fresh_ledger(Path(tmp), args.prefill)
                if kind == "new":
                    rates.append(rate(ledger.ingest, batch_events, batch))
                elif kind == "dup":
                    ledger.ingest(batch_events)
                    rates.append(rate(ledger.ingest, batch_events, batch))
                elif kind == "mixed":
                    ledger.ingest(half)
                    rates.append(rate(ledger.ingest, mixed, batch))
                else:
                    consume = partial(billing_ingest.ingest, ledger, FileBlobStore(Path(tmp) / "blobs"))
                    rates.append(rate(consume, bodies, batch))
        rows.append((label, rates))
        print(f"{label:<44}" + "".join(f"{r:>12,.0f}/s" for r in rates), flush=True)
    worst = min(r for _, rates in rows[:3] for r in rates)
    print(f"slowest ledger row: {worst:,.0f} events/s (target ≥ {TARGET:,} on one core)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
