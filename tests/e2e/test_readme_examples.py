"""The README's examples, run as pasted against the real local host with the example config (so the README
stays true): every curl line of its bash blocks and every Python block that talks to the host."""

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import ROOT, RunningHost, start_host, stop_host, wait_for

pytestmark = pytest.mark.e2e

README = (ROOT / "README.md").read_text(encoding="utf-8")
LOCAL = "http://127.0.0.1:7071"
KEY = "readme-demo-key"
ADMIN_KEY = "readme-admin-key"
KEYS = {"INFERQ_API_KEY": KEY, "INFERQ_ADMIN_KEY": ADMIN_KEY}


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def curl_commands() -> list[str]:
    """Each curl command of the bash blocks (continuation lines joined), in README order."""
    commands = []
    for block in blocks("bash"):
        for command in re.sub(r"\\\n\s*", " ", block).splitlines():
            if command.strip().startswith("curl") and LOCAL in command:
                commands.append(command.split("  #")[0].strip())
    return commands


@pytest.fixture(scope="module")
def example_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    running = start_host(tmp_path_factory.mktemp("readme"), env=KEYS, config=ROOT / "config" / "inferq.toml")
    yield running
    stop_host(running)


def run(command: str, host: RunningHost) -> str:
    command = command.replace(LOCAL, host.url)
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **KEYS},
    )
    assert result.returncode == 0, f"{command}\n{result.stderr}"
    assert result.stdout.strip(), f"no output from: {command}"
    return result.stdout


def billed_tokens(host: RunningHost) -> int:
    """The demo tenant's tokens billed this month."""
    with host.client(KEY) as c:
        return int(c.get("/usage", params={"granularity": "month"}).json()["total_tokens"])


def test_the_readme_has_examples_to_run() -> None:
    commands = curl_commands()
    assert len(commands) >= 8
    assert any("/embeddings" in c for c in commands) and any("/chat/completions" in c for c in commands)


MARK = "@@readme-command-end@@"


def block_commands(block: str) -> list[str]:
    """The block's commands that talk to the host, continuation lines joined, in order: its curl lines and the
    variables captured from the host (`JOB=$(curl ...)`) that later lines use."""
    lines = [c.strip() for c in re.sub(r"\\\n\s*", " ", block).splitlines()]
    talks = [c for c in lines if LOCAL in c and re.match(r"(curl |[A-Z_]+=\$\(curl )", c)]
    return [c.split("  #")[0].strip() for c in talks]


def test_every_curl_example_works_as_pasted(example_host: RunningHost) -> None:
    ran = 0
    for block in blocks("bash"):
        commands = block_commands(block)
        if not commands:
            continue
        if any("/usage" in c for c in commands):  # what the blocks before it used: billed within a second or so
            wait_for(lambda: billed_tokens(example_host) > 0)
        # One shell per block, as a user pastes it: a variable one line sets is there for the next.
        script = "".join(f"{c}\nprintf '\\n{MARK}\\n'\n" for c in commands)
        outputs = run(script, example_host).split(MARK)
        for command, out in zip(commands, outputs, strict=False):
            if not command.startswith("curl"):
                continue
            ran += 1
            assert out.strip(), f"no output from: {command}"
            if "-si" in command:
                assert "202" in out and "operation-location: /jobs/" in out.lower()
            elif "text/csv" in command:
                assert out.strip().startswith("tenant,period_start,"), f"{command}\n{out}"
                # The usage just made is in it: no dates that were right only in some month (issue 18).
                rows = list(csv.DictReader(io.StringIO(out.strip())))
                this_month = datetime.now(UTC).strftime("%Y-%m")
                assert rows and all(r["period_start"].startswith(this_month) for r in rows), f"{command}\n{out}"
            else:
                body = json.loads(out)
                assert body.get("error") is None and "detail" not in body, f"{command}\n{out}"
                if "/jobs/" in command or "$JOB" in command:
                    assert body["object"] == "job" and body["status"] in ("queued", "running", "succeeded")
    assert ran == len(curl_commands())


@pytest.mark.parametrize("index", range(len([b for b in blocks("python") if LOCAL in b])))
def test_every_python_example_works_as_pasted(example_host: RunningHost, index: int, tmp_path: Path) -> None:
    code = [b for b in blocks("python") if LOCAL in b][index].replace(LOCAL, example_host.url)
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **KEYS},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
