"""`inferq metering export` and `inferq deadletters` over the real SQLite ledger and blob folder of a data dir, as
an operator runs them (the settings from the environment)."""

import json
from datetime import UTC, datetime

from typer.testing import CliRunner

from functions.cli.app import app
from shared.application import usage_ingest
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


def test_deadletters_list_and_replay_bill_the_events_now_valid_once_and_keep_the_rest(
    service: Inferq, settings: Settings
) -> None:
    hour = datetime(2024, 3, 31, 23, tzinfo=UTC)
    refused = ledger_event("job-1", "acme", 1200, hour).model_dump_json()  # e.g. refused by an older check
    billed_before = ledger_event("job-2", "acme", 30, hour)
    service.ledger.ingest([billed_before])
    usage_ingest.dead_letter(service.blobs, "too long, once", refused)
    usage_ingest.dead_letter(service.blobs, "a copy", billed_before.model_dump_json())
    assert service.billing.ingest_usage(["not an event"]).dead_lettered == 1

    listed = runner.invoke(app, ["deadletters", "list", "--format", "json"], env=env(settings))
    assert listed.exit_code == 0, listed.output
    letters = json.loads(listed.stdout)["dead_letters"]
    assert [letter["reason"] for letter in letters][:2] == ["too long, once", "a copy"]
    assert letters[2]["body"] == "not an event" and "Invalid JSON" in letters[2]["reason"]
    table = runner.invoke(app, ["deadletters", "list"], env=env(settings))
    assert "3 dead-lettered usage event(s)" in table.stdout

    replayed = runner.invoke(app, ["deadletters", "replay"], env=env(settings))
    assert replayed.exit_code == 1  # one stays
    assert "1 billed, 1 duplicates, 0 kept for replay, 1 stay" in replayed.stderr
    assert "Invalid JSON" in replayed.stderr
    assert [t.tokens for t in service.ledger.hourly_totals("acme", hour, hour.replace(day=1, month=4))] == [1230]
    left = json.loads(runner.invoke(app, ["deadletters", "list", "--format", "json"], env=env(settings)).stdout)
    assert [letter["body"] for letter in left["dead_letters"]] == ["not an event"]

    again = runner.invoke(app, ["deadletters", "replay"], env=env(settings))
    assert "0 billed, 0 duplicates, 0 kept for replay, 1 stay" in again.stderr  # nothing billed twice
