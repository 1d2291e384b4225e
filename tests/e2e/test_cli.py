"""The operators' command line (`inferq`) against the real local host: a key made by `inferq keys create` works
(200), its usage shows in `inferq usage` and its job in `inferq jobs show`, over HTTP and from the local data;
revoked, it gets 401, here from a restarted host (test_entra_and_key_lifecycle.py: from the running one)."""

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from functions.cli.app import app
from tests.conftest import ADMIN_KEY, ROOT, start_host, stop_host, wait_for, write_config

pytestmark = pytest.mark.e2e
runner = CliRunner()


def inferq(*args: str, env: dict[str, str] | None = None) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_created_key_works_shows_its_usage_and_once_revoked_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path / "host.toml")
    key = inferq("keys", "create", "--tenant", "acme", "--config", str(config)).strip()
    assert key.startswith("iq-") and key not in config.read_text()  # only its sha256 is stored

    host = start_host(tmp_path, config=config)
    try:
        with host.client(key) as c:
            r = c.post("/embeddings", json={"input": ["Operators make keys.", "And revoke them."]})
            assert r.status_code == 200, r.text
            tokens = r.json()["usage"]["prompt_tokens"]
            job_id = r.headers["x-inferq-job-id"]
        over_http = ["usage", "--tenant", "acme", "--from", "2000-01-01", "--granularity", "month"]
        over_http += ["--url", host.url, "--format", "json"]

        def billed() -> int:
            return int(json.loads(inferq(*over_http, env={"INFERQ_ADMIN_KEY": ADMIN_KEY}))["total_tokens"])

        wait_for(lambda: billed() == tokens)
        local_env = {"INFERQ_DATA_DIR": str(host.data_dir), "INFERQ_CONFIG": str(config), "COLUMNS": "200"}
        local = ["usage", "--tenant", "acme", "--from", "2000-01-01", "--granularity", "month"]
        assert json.loads(inferq(*local, "--format", "json", env=local_env))["total_tokens"] == tokens
        table = inferq(*local, env=local_env)
        assert "all-MiniLM-L6-v2" in table and f"{tokens} tokens" in table
        assert inferq(*local, "--format", "csv", env=local_env).splitlines()[1].startswith("acme,")

        shown = json.loads(inferq("jobs", "show", job_id, "--url", host.url, "--key", key))
        assert shown["status"] == "succeeded" and shown["deployment"] == "all-MiniLM-L6-v2"
        stored = json.loads(inferq("jobs", "show", job_id, env=local_env))  # the local data: any tenant's job
        assert stored["status"] == "succeeded" and stored["tenant"] == "acme"
        missing = runner.invoke(app, ["jobs", "show", "no-such-job", "--url", host.url, "--key", key])
        assert missing.exit_code == 1 and "404" in missing.stderr
    finally:
        stop_host(host)

    inferq("keys", "revoke", "--tenant", "acme", "--key", key, "--config", str(config))
    host = start_host(tmp_path, config=config)
    try:
        with host.client(key) as c:
            assert c.post("/embeddings", json={"input": ["Revoked."]}).status_code == 401
    finally:
        stop_host(host)


def test_make_install_gives_an_inferq_command_that_runs_from_anywhere(tmp_path: Path) -> None:
    launcher = ROOT / ".venv" / "bin" / "inferq"  # what `make install` (a step of `make test`) writes
    config = write_config(tmp_path / "inferq.toml")
    result = subprocess.run(
        [str(launcher), "config", "check", str(config)], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0 and "valid" in result.stdout, result.stderr
    # Not an editable install: the venv's interpreters (a scoring script's process among them) can't import the
    # project unless they are given it.
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('shared') is not None)"
    isolated = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-I", "-c", probe], cwd=tmp_path)
    assert isolated.returncode == 0
