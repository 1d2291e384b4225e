"""`inferq keys` edits the config in place (comments and layout kept, only hashes stored, every edit checked by the
host's loader) and `inferq config check` validates a config as the host does: a broken one names the field."""

from pathlib import Path

from typer.testing import CliRunner

from functions.cli.app import app
from shared.domain.auth import hash_key
from shared.domain.config import load_config
from tests.conftest import write_config

runner = CliRunner()


def test_config_check_prints_what_a_config_serves(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml")
    result = runner.invoke(app, ["config", "check", str(config)])
    assert result.exit_code == 0, result.output
    for name in ("all-MiniLM-L6-v2", "tiny-random-chat", "linear-scorer", "acme", "globex", "Endpoints"):
        assert name in result.stdout


def test_config_check_of_a_broken_config_names_the_field_and_fails(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml")
    config.write_text(config.read_text().replace("max_tokens = 256", "max_tokens = -1", 1))
    result = runner.invoke(app, ["config", "check", str(config)])
    assert result.exit_code == 2
    assert "deployments.0.max_tokens" in result.stderr and "greater than 0" in result.stderr
    result = runner.invoke(app, ["config", "check", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "config file not found" in result.stderr


def test_keys_create_and_revoke_keep_comments_and_store_only_hashes(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml")
    text = config.read_text().replace('name = "globex"', 'name = "globex"   # a tenant comment')
    config.write_text(text)
    created = runner.invoke(app, ["keys", "create", "--tenant", "globex", "--config", str(config)])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    after = config.read_text()
    assert key not in after and "# a tenant comment" in after and "# per 1,000 tokens" in after
    assert hash_key(key) in load_config(config).tenant("globex").key_sha256
    assert len(load_config(config).tenant("globex").key_sha256) == 2  # its first key kept

    by_hash = ["keys", "revoke", "--tenant", "globex", "--sha256", hash_key(key), "--config", str(config)]
    assert runner.invoke(app, by_hash).exit_code == 0
    assert config.read_text() == text  # back as it was, byte for byte
    again = runner.invoke(app, by_hash)
    assert again.exit_code == 1 and "has no key" in again.stderr


def test_keys_for_an_unknown_tenant_or_a_broken_config_change_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml")
    text = config.read_text()
    result = runner.invoke(app, ["keys", "create", "--tenant", "nobody", "--config", str(config)])
    assert result.exit_code == 1 and "no tenant 'nobody'" in result.stderr
    assert config.read_text() == text
    config.write_text(text.replace('currency = "USD"', "currency = 1"))
    result = runner.invoke(app, ["keys", "create", "--tenant", "acme", "--config", str(config)])
    assert result.exit_code == 1 and "currency" in result.stderr
    neither = runner.invoke(app, ["keys", "revoke", "--tenant", "acme", "--config", str(config)])
    assert neither.exit_code != 0


def test_tenants_add_appends_a_tenant_with_its_limits_and_list_shows_it(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml")
    before = config.read_text()
    added = runner.invoke(app, ["tenants", "add", "initech", "--budget", "50.00", "--rpm", "600", "-c", str(config)])
    assert added.exit_code == 0, added.output
    assert config.read_text().startswith(before[: before.index("[[deployments]]")])  # what was there, kept
    tenant = load_config(config).tenant("initech")
    assert (str(tenant.monthly_budget), tenant.requests_per_minute, tenant.key_sha256) == ("50.00", 600, ())
    listed = runner.invoke(app, ["tenants", "list", "-c", str(config)], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "initech" in listed.stdout and "50.00 USD" in listed.stdout

    after = config.read_text()
    for bad, says in ((["ACME"], "exists already"), (["x", "--budget", "lots"], "monthly_budget")):
        result = runner.invoke(app, ["tenants", "add", *bad, "-c", str(config)])
        assert result.exit_code == 1 and says in result.stderr
        assert config.read_text() == after  # a refused edit changes nothing


def test_keys_with_ids_and_expiry_are_listed_by_id_never_by_key(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml")
    args = ["keys", "create", "--tenant", "acme", "--id", "ci-2026", "--expires", "2020-01-01T00:00:00Z"]
    key = runner.invoke(app, [*args, "-c", str(config)]).stdout.strip()
    (added,) = load_config(config).tenant("acme").keys
    assert (added.id, added.sha256, added.expires.year if added.expires else None) == ("ci-2026", hash_key(key), 2020)
    again = runner.invoke(app, [*args, "-c", str(config)])
    assert again.exit_code == 1 and "key id 'ci-2026' is used twice" in again.stderr
    naive = runner.invoke(app, ["keys", "create", "--tenant", "acme", "--expires", "2027-01-01", "-c", str(config)])
    assert naive.exit_code == 1 and "RFC 3339" in naive.stderr

    listed = runner.invoke(app, ["keys", "list", "-c", str(config)], env={"COLUMNS": "200"})
    assert listed.exit_code == 0
    rows = {line.split("│")[2].strip(): line for line in listed.stdout.splitlines() if line.count("│") == 5}
    assert "expired" in rows["ci-2026"] and "2020-01-01T00:00:00+00:00" in rows["ci-2026"]
    assert "active" in rows[hash_key("acme-key")[:8]] and hash_key("acme-key") not in listed.stdout
    assert key not in listed.stdout and hash_key(key) not in listed.stdout

    revoke = ["keys", "revoke", "--tenant", "acme", "--id", "ci-2026", "-c", str(config)]
    assert runner.invoke(app, revoke).exit_code == 0
    assert load_config(config).tenant("acme").keys == ()
