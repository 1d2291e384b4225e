"""INFERQ_PRELOAD: the deployments whose models the local host loads at start; the others load on their first job.
What is loaded is read from the host process's memory map: a generation model maps onnxruntime-genai."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, host_env, start_host, stop_host

GENAI = "libonnxruntime-genai.so"
CHAT = {"model": "tiny-random-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


def mapped(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_by_default_every_deployment_is_loaded_at_start(tmp_path: Path) -> None:
    host = start_host(tmp_path)
    try:
        assert GENAI in mapped(host.process.pid)
    finally:
        stop_host(host)


def test_a_deployment_left_out_loads_on_its_first_job(tmp_path: Path) -> None:
    host = start_host(tmp_path, {"INFERQ_PRELOAD": "ALL-MiniLM-L6-v2"})  # names match case-insensitively
    try:
        assert GENAI not in mapped(host.process.pid)
        with host.client() as client:
            embedded = client.post("/embeddings", json={"model": "all-MiniLM-L6-v2", "input": "hello"})
            assert embedded.status_code == 200, embedded.text
            assert GENAI not in mapped(host.process.pid)

            chat = client.post("/chat/completions", json=CHAT)
        assert chat.status_code == 200, chat.text
        assert chat.json()["usage"]["completion_tokens"] == 3
        assert GENAI in mapped(host.process.pid)
    finally:
        stop_host(host)


def test_a_name_the_config_lacks_stops_the_host_saying_so(tmp_path: Path) -> None:
    env = host_env(tmp_path, {"INFERQ_PRELOAD": "all-MiniLM-L6-v2, no-such-model"})
    done = subprocess.run(
        [sys.executable, "-m", "functions.local"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "INFERQ_PRELOAD names no deployment of the config: no-such-model" in done.stderr
