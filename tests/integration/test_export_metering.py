"""The operator's metering export CLI, run as a user would, over a SQLite ledger."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal

from shared.bootstrap import Inferq
from shared.settings import Settings
from tests.conftest import ROOT, ledger_event


def export(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INFERQ_CONFIG": str(settings.config), "INFERQ_DATA_DIR": str(settings.data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "scripts.export_metering", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_export_writes_one_record_per_line_and_the_same_ids_again(service: Inferq, settings: Settings) -> None:
    hour = datetime(2024, 3, 31, 23, tzinfo=UTC)
    service.ledger.ingest(
        [ledger_event(f"job-{tenant}", tenant, tokens, hour) for tenant, tokens in (("acme", 2500), ("globex", 40))]
    )
    first = export(settings, "--from", "2024-03-01", "--to", "2024-04-01")
    assert first.returncode == 0, first.stderr
    records = [json.loads(line, parse_float=Decimal) for line in first.stdout.splitlines()]
    assert {(r["containerId"], r["meter"]["quantity"], r["requestTime"]) for r in records} == {
        ("acme", Decimal("2.5"), 1711926000),  # a number; 2024-03-31T23:00:00Z in Unix seconds
        ("globex", Decimal("0.04"), 1711926000),
    }
    assert export(settings, "--from", "2024-03-01", "--to", "2024-04-01").stdout == first.stdout
    only = export(settings, "--from", "2024-03-01", "--to", "2024-04-01", "--tenant", "globex")
    assert [json.loads(line)["containerId"] for line in only.stdout.splitlines()] == ["globex"]

    bad = export(settings, "--from", "someday")
    assert bad.returncode == 2 and "'from' must be an ISO 8601" in bad.stderr
