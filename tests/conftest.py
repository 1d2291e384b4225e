"""Shared fixtures: a config with two tenants, the service on SQLite in tmp_path, the real local host."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from shared.bootstrap import Inferq, bootstrap, set_app
from shared.domain.auth import hash_key
from shared.domain.config import AppConfig, load_config
from shared.schemas.usage import Meter, UsageEvent, usage_event
from shared.settings import Settings
from tests.azurite import azurite  # noqa: F401  (the session's Azurite, for the Azure adapter tests)
from tests.otel import otel  # noqa: F401  (in-memory OpenTelemetry, for the telemetry tests)

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "models" / "all-MiniLM-L6-v2-int8"
CHAT_MODEL_DIR = ROOT / "config" / "demo" / "tiny-chat"
KEYS = {"acme": "acme-key", "globex": "globex-key"}
ADMIN_KEY = "admin-key"


# The index in `deployments` of the first deployment `write_config(after=...)` appends (what config errors name).
APPENDED = (ROOT / "config" / "inferq.toml").read_text().count("[[deployments]]")


def write_config(path: Path, extra: str = "", after: str = "") -> Path:
    """The example config's deployments with two tenants whose keys are known to the tests; `extra` goes before
    the deployments (tenants), `after` at the end (more deployments, endpoints)."""
    example = (ROOT / "config" / "inferq.toml").read_text()
    deployments = example[example.index("[[deployments]]") :]
    for folder in ("models/", "config/demo/"):
        for field in ("source", "script"):
            deployments = deployments.replace(f'{field} = "{folder}', f'{field} = "{ROOT.as_posix()}/{folder}')
    tenants = "".join(
        f'[[tenants]]\nname = "{name}"\nkey_sha256 = ["{hash_key(key)}"]\n\n' for name, key in KEYS.items()
    )
    path.write_text(
        f'currency = "USD"\nadmin_key_sha256 = ["{hash_key(ADMIN_KEY)}"]\n\n{tenants}{extra}\n{deployments}\n{after}'
    )
    return path


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path / "inferq.toml")


@pytest.fixture
def settings(tmp_path: Path, config_path: Path) -> Settings:
    # Outcomes written as jobs end, so a test reads /deployments figures at once (tests/unit covers the batching).
    return Settings(data_dir=tmp_path / "data", config=config_path, stats_flush_s=0, _env_file=None)


@pytest.fixture
def config(settings: Settings) -> AppConfig:
    return load_config(settings.config)


@pytest.fixture
def service(settings: Settings, config: AppConfig) -> Inferq:
    return bootstrap(settings, config=config)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningHost:
    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path

    def client(self, key: str | None = KEYS["acme"], timeout: float = 60) -> httpx.Client:
        headers = {"api-key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def host_env(tmp_path: Path, env: dict[str, str] | None = None, config: Path | None = None) -> dict[str, str]:
    """The environment a test's local host runs with: a free port, its own data dir and config, a known key."""
    return {
        **os.environ,
        "PORT": str(free_port()),
        "INFERQ_DATA_DIR": str(tmp_path / "host-data"),
        "INFERQ_CONFIG": str(config or write_config(tmp_path / "host.toml")),
        "INFERQ_API_KEY": "demo-key",
        "INFERQ_USAGE_PUBLISH_INTERVAL_S": "0.5",
        **(env or {}),
    }


def start_host(
    tmp_path: Path, env: dict[str, str] | None = None, config: Path | None = None, module: str = "functions.local"
) -> RunningHost:
    """The local host (or a test's variant of it, `module`) in a process of its own, once it answers /health."""
    full_env = host_env(tmp_path, env, config)
    log_path = tmp_path / "host.log"
    with log_path.open("wb") as log_file:  # the child keeps its own handle
        process = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{full_env['PORT']}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"local host exited:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return RunningHost(url, process, Path(full_env["INFERQ_DATA_DIR"]), log_path)
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"local host did not start:\n{log_path.read_text()}")


def stop_host(host: RunningHost) -> None:
    host.process.terminate()
    try:
        host.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        host.process.kill()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    """The real local host on a free port, once per test module."""
    running = start_host(tmp_path_factory.mktemp("host"))
    yield running
    stop_host(running)


@pytest.fixture(autouse=True, scope="module")
def _collect_garbage() -> Iterator[None]:
    """Collect after each module, so an unclosed socket's ResourceWarning fails in the module that leaked it
    instead of wherever the garbage collector happens to run later (per test costs the suite half its time)."""
    yield
    gc.collect()


def ledger_event(
    job_id: str,
    tenant: str,
    tokens: int,
    time: datetime,
    *,
    deployment: str = "all-MiniLM-L6-v2",
    model: str = "m",
    meter: Meter = Meter.INPUT_TOKENS,
    mirrored: bool = False,
) -> UsageEvent:
    """A usage event (input tokens unless told), for tests that feed the ledger or the stream directly."""
    return usage_event(
        job_id=job_id,
        tenant=tenant,
        endpoint=deployment,
        deployment=deployment,
        model=model,
        meter=meter,
        tokens=tokens,
        time=time,
        mirrored=mirrored,
    )


@contextmanager
def app_client(service: Inferq) -> Iterator[TestClient]:
    """The HTTP app in process on `service` (installed for the function objects too); an unexpected error is
    answered 500, as the host answers it, instead of raised into the test."""
    from fastapi.testclient import TestClient

    from functions.http.app import app

    set_app(service)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client
    finally:
        set_app(None)


@pytest.fixture
def installed(service: Inferq) -> Iterator[Inferq]:
    """The service the function objects (`functions.azure.indexing.trigger`) call, for the test's duration."""
    set_app(service)
    yield service
    set_app(None)


def wait_for(predicate: object, timeout: float = 30, interval: float = 0.05) -> None:
    """Poll until `predicate()` is truthy (no fixed sleeps); fails the test at the deadline."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@contextmanager
def serving(app: Any, host_app: Inferq) -> Iterator[str]:
    """An ASGI app under uvicorn on a free port, in a thread, with the local host's queue side (its pump calls
    the registered `run_job`) running on `host_app`: the URL while it runs."""
    import threading

    import uvicorn

    from functions.local.host import LocalHost

    local = LocalHost.build(host_app)
    local.start()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=30)
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(10)
        local.stop()
