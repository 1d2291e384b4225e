"""`inferq metering export` and `inferq deadletters` over the real SQLite ledger and blob folder of a data dir, as
an operator runs them (the settings from the environment)."""

import json
from datetime import UTC, datetime

from typer.testing import CliRunner

from functions.cli.app import app
from shared.bootstrap import Inferq
from shared.settings import Settings
from tests.conftest import ledger_event
from tests.integration.test_export_metering import export

runner = CliRunner()


def env(settings: Settings) -> dict[str, str]:
    return {"INFERQ_CONFIG": str(settings.config), "INFERQ_DATA_DIR": str(settings.data_dir), "COLUMNS": "200"}


def test_metering_export_writes_what_the_script_writes(service: Inferq, settings: Settings) -> None:
    hour = datetime(2024, 3, 31, 23, tzinfo=UTC)
    service.ledger.ingest([ledger_event(f"job-{t}", t, n, hour) for t, n in (("acme", 2500), ("globex", 40))])
    args = ["--from", "2024-03-01", "--to", "2024-04-01"]
    result = runner.invoke(app, ["metering", "export", *args], env=env(settings))
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["containerId"] for line in result.stdout.splitlines()] == ["acme", "globex"]
    assert result.stdout == export(settings, *args).stdout

    only = runner.invoke(app, ["metering", "export", *args, "--tenant", "globex"], env=env(settings))
    assert [json.loads(line)["containerId"] for line in only.stdout.splitlines()] == ["globex"]
    bad = runner.invoke(app, ["metering", "export", "--from", "someday"], env=env(settings))
    assert bad.exit_code == 1 and "'from' must be an ISO 8601" in bad.stderr
