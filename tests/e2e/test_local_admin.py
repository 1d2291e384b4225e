"""`make run` with the example config gives an admin key too (issue 18, item 3): `/deployments` works on the
first run, with the key it printed or the one INFERQ_ADMIN_KEY chose."""

import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, start_host, stop_host

pytestmark = pytest.mark.e2e
EXAMPLE = ROOT / "config" / "inferq.toml"


def deployments(url: str, key: str) -> int:
    return httpx.get(f"{url}/deployments", headers={"api-key": key}, timeout=30).status_code


def test_the_host_prints_a_generated_admin_key_that_reads_deployments(tmp_path: Path) -> None:
    host = start_host(tmp_path, config=EXAMPLE)
    try:
        printed = re.search(r"export INFERQ_ADMIN_KEY=(\S+)", host.log())
        assert printed is not None, host.log()
        assert deployments(host.url, printed.group(1)) == 200
        assert deployments(host.url, "demo-key") == 403  # the demo tenant's key is no admin
    finally:
        stop_host(host)


def test_an_admin_key_chosen_with_INFERQ_ADMIN_KEY_is_used_and_not_printed(tmp_path: Path) -> None:
    host = start_host(tmp_path, env={"INFERQ_ADMIN_KEY": "my-admin-key"}, config=EXAMPLE)
    try:
        assert deployments(host.url, "my-admin-key") == 200
        assert "INFERQ_ADMIN_KEY" not in host.log() and "my-admin-key" not in host.log()
    finally:
        stop_host(host)
