"""The README's examples, run as pasted against the real local host with the example config (so the README
stays true): every curl line of its bash blocks and every Python block that talks to the host."""

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, RunningHost, start_host, stop_host

pytestmark = pytest.mark.e2e

README = (ROOT / "README.md").read_text(encoding="utf-8")
LOCAL = "http://127.0.0.1:7071"
KEY = "readme-demo-key"


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
    running = start_host(
        tmp_path_factory.mktemp("readme"), env={"INFERQ_API_KEY": KEY}, config=ROOT / "config" / "inferq.toml"
    )
    yield running
    stop_host(running)


def run(command: str, host: RunningHost) -> str:
    command = command.replace(LOCAL, host.url)
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "INFERQ_API_KEY": KEY},
    )
    assert result.returncode == 0, f"{command}\n{result.stderr}"
    assert result.stdout.strip(), f"no output from: {command}"
    return result.stdout


def test_the_readme_has_examples_to_run() -> None:
    commands = curl_commands()
    assert len(commands) >= 8
    assert any("/embeddings" in c for c in commands) and any("/chat/completions" in c for c in commands)


def test_every_curl_example_works_as_pasted(example_host: RunningHost) -> None:
    for command in curl_commands():
        if "<job id>" in command:  # the one placeholder: the id the async example just returned
            job = json.loads(
                run(
                    f'curl -s {LOCAL}/embeddings -H "api-key: $INFERQ_API_KEY" -H "Prefer: respond-async" '
                    "-H 'content-type: application/json' -d '{\"input\": \"x\"}'",
                    example_host,
                )
            )
            command = command.replace("<job id>", job["id"])
        out = run(command, example_host)
        if "-si" in command:
            assert "202" in out and "operation-location: /jobs/" in out.lower()
        elif "text/csv" in command:
            assert out.startswith("tenant,period_start,")
        else:
            body = json.loads(out)
            assert body.get("error") is None and "detail" not in body, f"{command}\n{out}"


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
        env={**os.environ, "INFERQ_API_KEY": KEY},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
