"""Azurite (npm, pinned in package.json) for the Azure adapter tests: one process per test session on free
ports, in memory, with a pool of storage accounts so a test that uses the fixed queue/table names of
shared/bindings.py gets an account of its own. Loaded by tests/conftest.py as a pytest plugin."""

from __future__ import annotations

import base64
import itertools
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.adapters.azure.connection import AZURITE_ACCOUNT, AZURITE_KEY, azurite_connection_string

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite"
POOL = [f"inferqtest{i}" for i in range(32)]


def _key(account: str) -> str:
    return AZURITE_KEY if account == AZURITE_ACCOUNT else base64.b64encode(f"key-{account}".encode()).decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique(prefix: str) -> str:
    """A fresh queue, container or table name (letters and digits, valid for all three)."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@dataclass
class Azurite:
    blob_port: int
    queue_port: int
    table_port: int
    _pool: Iterator[str] = field(default_factory=lambda: iter(POOL))

    def connection_string(self, account: str = AZURITE_ACCOUNT) -> str:
        return azurite_connection_string(
            self.blob_port, self.queue_port, self.table_port, account=account, key=_key(account)
        )

    def fresh_connection_string(self) -> str:
        """A storage account no other test has used."""
        try:
            return self.connection_string(next(self._pool))
        except StopIteration:
            raise RuntimeError(
                f"all {len(POOL)} Azurite test accounts are taken: enlarge tests/azurite.py POOL"
            ) from None

    def blob_url(self, account: str = AZURITE_ACCOUNT) -> str:
        return f"http://127.0.0.1:{self.blob_port}/{account}"


def _ready(ports: list[int], process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    waiting = list(ports)
    while waiting and time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Azurite exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.5):
                waiting.pop(0)
        except OSError:
            time.sleep(0.05)
    if waiting:
        raise RuntimeError(f"Azurite did not listen on {waiting} within {timeout}s:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    if not AZURITE_BIN.exists():
        pytest.fail("Azurite is not installed: run `make node` (or `npm ci`) first; `make test` does it", pytrace=False)
    ports = [_free_port() for _ in range(3)]
    log = tmp_path_factory.mktemp("azurite") / "azurite.log"
    accounts = ";".join(f"{a}:{_key(a)}" for a in itertools.chain([AZURITE_ACCOUNT], POOL))
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(AZURITE_BIN),
                "--silent",
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--loose",
                "--extentMemoryLimit",
                "1024",
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(ports[0]),
                "--queueHost",
                "127.0.0.1",
                "--queuePort",
                str(ports[1]),
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                str(ports[2]),
            ],
            cwd=ROOT,
            env={**os.environ, "AZURITE_ACCOUNTS": accounts},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _ready(ports, process, log)
        yield Azurite(*ports)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
