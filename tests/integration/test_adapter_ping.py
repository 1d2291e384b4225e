"""Readiness probes: every adapter's `ping()` returns while its backend answers, and raises StorageUnavailable
(without the adapters' usual minute of retries) when the backend is stopped, or accepts connections but never
answers. Azure adapters run against an Azurite of this module's own, stopped half-way; the SQLite and file
adapters against tmp_path."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.azure.connection import AZURITE_ACCOUNT, AZURITE_KEY, azurite_connection_string
from shared.adapters.azure.factory import AzureAdapters
from shared.adapters.azure.usage_stream import AzureUsageStream
from shared.adapters.files import FileBlobStore
from shared.adapters.sqlite.db import SqliteDatabase
from shared.adapters.sqlite.jobs import SqliteJobStore
from shared.adapters.sqlite.ledger import SqliteUsageLedger
from shared.adapters.sqlite.queue import SqliteJobQueue
from shared.adapters.sqlite.stats import SqliteDeploymentStats
from shared.adapters.sqlite.usage_log import SqliteUsageLog
from shared.bindings import JOB_QUEUE
from shared.domain.errors import StorageUnavailable
from shared.domain.ports import Pingable
from shared.settings import Settings
from tests.azurite import AZURITE_BIN, ROOT, unique

SHORT_TIMEOUT_S = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def azure_adapters(connection: str) -> AzureAdapters:
    return AzureAdapters.from_settings(Settings(_env_file=None, backend="azure", AzureWebJobsStorage=connection))


def storage_ports(a: AzureAdapters) -> dict[str, Pingable]:
    return {"queue": a.queue, "job store": a.store, "blob store": a.blobs, "ledger": a.ledger, "stats": a.stats}


def raises_unavailable(adapter: Pingable) -> str:
    with pytest.raises(StorageUnavailable) as caught:
        adapter.ping()
    return caught.value.message


# --- SQLite and files ------------------------------------------------------------------------------------------


def test_embedded_adapters_answer(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "inferq.sqlite3")
    adapters: list[Pingable] = [
        SqliteJobQueue(db, JOB_QUEUE),
        SqliteJobStore(db),
        FileBlobStore(tmp_path / "blobs"),
        SqliteUsageLog(db),
        SqliteUsageLedger(db),
        SqliteDeploymentStats(db),
    ]
    for adapter in adapters:
        assert adapter.ping() is None


def test_a_database_error_is_storage_unavailable(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "inferq.sqlite3")
    store = SqliteJobStore(db)
    with db.transaction() as conn:
        conn.execute("DROP TABLE jobs")
    assert "no such table: jobs" in raises_unavailable(store)


def test_a_missing_blob_folder_is_storage_unavailable(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path / "blobs")
    (tmp_path / "blobs").rmdir()
    assert str(tmp_path / "blobs") in raises_unavailable(blobs)


# --- Azure Storage on an Azurite that this module stops ------------------------------------------------------


class OwnAzurite:
    """Azurite on free ports, in memory, for this module alone (the session's must keep running)."""

    def __init__(self, log: Path) -> None:
        self.ports = [free_port() for _ in range(3)]
        self.log = log
        self.start()

    def start(self) -> None:
        """Start (again, on the same ports: a restarted Azurite, empty as in-memory ones are)."""
        log = self.log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(AZURITE_BIN), "--silent", "--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck",
                 "--loose", "--blobHost", "127.0.0.1", "--blobPort", str(self.ports[0]), "--queueHost", "127.0.0.1",
                 "--queuePort", str(self.ports[1]), "--tableHost", "127.0.0.1", "--tablePort", str(self.ports[2])],
                cwd=ROOT, env={**os.environ, "AZURITE_ACCOUNTS": f"{AZURITE_ACCOUNT}:{AZURITE_KEY}"},
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        for port in self.ports:
            while True:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"Azurite did not start:\n{log.read_text(errors='replace')}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.05)

    def connection_string(self) -> str:
        return azurite_connection_string(*self.ports)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def own_azurite(tmp_path: Path) -> Iterator[OwnAzurite]:
    if not AZURITE_BIN.exists():
        pytest.fail("Azurite is not installed: run `make node` (or `npm ci`) first", pytrace=False)
    azurite = OwnAzurite(tmp_path / "azurite.log")
    yield azurite
    azurite.stop()


def test_azure_adapters_answer_then_fail_fast_once_azurite_is_stopped(own_azurite: OwnAzurite) -> None:
    a = azure_adapters(own_azurite.connection_string())
    ports = storage_ports(a)
    for name, port in ports.items():  # nothing is created yet: a 404 is an answer too
        assert port.ping() is None, name
    start = datetime(2026, 1, 1, tzinfo=UTC)
    a.queue.send("{}")  # now the queues, the container and the tables exist
    a.blobs.put(unique("key"), b"x")
    a.ledger.hourly_totals(None, start, start + timedelta(hours=1))
    a.stats.outcomes(start, start + timedelta(hours=1))
    assert a.store.get("job_none") is None
    for name, port in ports.items():
        assert port.ping() is None, name

    own_azurite.stop()  # mid-run: the clients hold pooled connections to it
    for name, port in ports.items():
        assert raises_unavailable(port), name


# --- A backend that accepts connections and never answers ------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and then says nothing (a hung service, or a half-open network path)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()
    # The probes left waiting on this port end now that it closed. Event Hubs' AMQP transport does not close
    # the socket of a handshake that failed this way, so collect it here, knowingly, rather than let the garbage
    # collector report it in some later test.
    for probe in threading.enumerate():
        if probe.name.startswith("ping "):
            probe.join(15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_a_storage_service_that_never_answers_times_out(silent_port: int) -> None:
    adapters = azure_adapters(azurite_connection_string(silent_port, silent_port, silent_port))
    for name, adapter in storage_ports(adapters).items():
        adapter.ping_timeout_s = SHORT_TIMEOUT_S  # type: ignore[attr-defined]
        assert "no answer within 0.5 s" in raises_unavailable(adapter), name
    # The probes left behind end on their clients' own socket timeouts; then their connections are closed here,
    # not by the garbage collector in some later test.
    for thread in threading.enumerate():
        if thread.name.startswith("ping "):
            thread.join(15)
    adapters.storage.close()


# --- Event Hubs ----------------------------------------------------------------------------------------------


def hub_connection(port: int) -> str:
    return (
        f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;"
        "EntityPath=inferq-usage;UseDevelopmentEmulator=true"
    )


class PropertiesProducer:
    def __init__(self) -> None:
        self.asked = 0
        self.closed = False

    def get_eventhub_properties(self) -> dict[str, Any]:
        self.asked += 1
        return {"eventhub_name": "inferq-usage", "partition_ids": ["0", "1", "2", "3"]}

    def close(self) -> None:
        self.closed = True


def test_the_usage_stream_answers_with_the_hubs_properties_on_a_producer_of_its_own() -> None:
    pinging: list[PropertiesProducer] = []

    def publisher() -> Any:
        raise AssertionError("a ping must not build (or wait for) the publishing producer")

    def ping_connect() -> PropertiesProducer:
        pinging.append(PropertiesProducer())
        return pinging[-1]

    stream = AzureUsageStream(publisher, ping_connect=ping_connect)
    stream.ping()
    stream.ping()
    assert len(pinging) == 1 and pinging[0].asked == 2  # built once, reused
    stream.close()
    assert pinging[0].closed


def test_an_unreachable_event_hubs_namespace_is_storage_unavailable() -> None:
    stream = AzureUsageStream.from_settings(Settings(_env_file=None, EventHubConnection=hub_connection(free_port())))
    assert stream is not None
    try:
        assert "usage stream (Event Hubs)" in raises_unavailable(stream)
    finally:
        stream.close()


def test_an_event_hubs_namespace_that_never_answers_times_out(silent_port: int) -> None:
    stream = AzureUsageStream.from_settings(Settings(_env_file=None, EventHubConnection=hub_connection(silent_port)))
    assert stream is not None
    stream.ping_timeout_s = SHORT_TIMEOUT_S
    assert "no answer within 0.5 s" in raises_unavailable(stream)
