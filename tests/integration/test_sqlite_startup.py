"""Processes that open one new database file at the same moment (two local hosts, a host and `inferq`) all start:
SQLite refuses all but one of their simultaneous switches to WAL at once, without waiting."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

from shared.adapters.sqlite.db import SqliteDatabase

PROCESSES, ROUNDS = 6, 100


def _open(path: str, barrier: Any) -> str:
    barrier.wait()  # all at once
    try:
        SqliteDatabase(Path(path))
    except Exception as exc:
        return repr(exc)
    return "ok"


def test_processes_opening_a_new_database_at_once_all_start(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    failures: list[str] = []
    with context.Manager() as manager, context.Pool(PROCESSES) as pool:
        for round_ in range(ROUNDS):
            barrier = manager.Barrier(PROCESSES)
            path = str(tmp_path / f"round-{round_}.sqlite3")
            failures += [r for r in pool.starmap(_open, [(path, barrier)] * PROCESSES) if r != "ok"]
    assert failures == []
