"""Every port's adapters behind one parametrised fixture: each contract test runs on the in-memory fakes, on
SQLite and on Azure (Azurite), so the adapters can't drift apart."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.adapters.azure.blobs import AzureBlobStore
from shared.adapters.azure.connection import AzureStorage, StorageConnection
from shared.adapters.azure.jobs import AzureJobStore
from shared.adapters.azure.ledger import AzureUsageLedger
from shared.adapters.azure.queue import AzureJobQueue
from shared.adapters.azure.reservations import AzureBudgetReservations
from shared.adapters.azure.stats import AzureDeploymentStats
from shared.adapters.files import FileBlobStore
from shared.adapters.memory import (
    MemoryBlobStore,
    MemoryBudgetReservations,
    MemoryDeploymentStats,
    MemoryJobQueue,
    MemoryJobStore,
    MemoryUsageLedger,
    MemoryUsageLog,
)
from shared.adapters.sqlite.db import SqliteDatabase
from shared.adapters.sqlite.jobs import SqliteJobStore
from shared.adapters.sqlite.ledger import SqliteUsageLedger
from shared.adapters.sqlite.queue import SqliteJobQueue
from shared.adapters.sqlite.reservations import SqliteBudgetReservations
from shared.adapters.sqlite.stats import SqliteDeploymentStats
from shared.adapters.sqlite.usage_log import SqliteUsageLog
from shared.domain.ports import BlobStore, BudgetReservations, DeploymentStats, JobQueue, JobStore, UsageLedger
from tests.azurite import Azurite, unique


@dataclass
class Queues:
    queue: JobQueue
    poison: JobQueue

    def count(self, queue: JobQueue) -> int:
        assert isinstance(queue, MemoryJobQueue | SqliteJobQueue | AzureJobQueue)
        return queue.count()


@pytest.fixture(params=["memory", "sqlite", "azure"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage(backend: str, request: pytest.FixtureRequest) -> AzureStorage | None:
    if backend != "azure":
        return None
    azurite: Azurite = request.getfixturevalue("azurite")  # started only when an Azure case runs
    return AzureStorage(StorageConnection(connection_string=azurite.connection_string()))


@pytest.fixture
def db(tmp_path: Path) -> SqliteDatabase:
    return SqliteDatabase(tmp_path / "contract.sqlite3")


@pytest.fixture
def queues(backend: str, storage: AzureStorage | None, db: SqliteDatabase) -> Queues:
    if backend == "memory":
        return Queues(MemoryJobQueue("jobs"), MemoryJobQueue("jobs-poison"))
    if storage is None:
        return Queues(SqliteJobQueue(db, "jobs"), SqliteJobQueue(db, "jobs-poison"))
    name = unique("jobs")
    azure = AzureJobQueue(storage.queue(name), poison=storage.queue(f"{name}-poison"))
    return Queues(azure, azure.poison_queue())


@pytest.fixture
def blobs(backend: str, storage: AzureStorage | None, tmp_path: Path) -> BlobStore:
    if backend == "memory":
        return MemoryBlobStore()
    if storage is None:
        return FileBlobStore(tmp_path / "blobs")
    return AzureBlobStore(storage.container(unique("blobs")))


@pytest.fixture
def store(backend: str, storage: AzureStorage | None, db: SqliteDatabase, blobs: BlobStore) -> Iterator[JobStore]:
    if backend == "memory":
        yield MemoryJobStore()
        return
    if storage is None:
        yield SqliteJobStore(db)
        return
    assert isinstance(blobs, AzureBlobStore)
    yield AzureJobStore(storage.table(unique("jobs")), blobs)


@pytest.fixture
def ledger(backend: str, storage: AzureStorage | None, db: SqliteDatabase) -> UsageLedger:
    if backend == "memory":
        return MemoryUsageLedger()
    if storage is None:
        return SqliteUsageLedger(db)
    return AzureUsageLedger(storage.table(unique("usage")))


@pytest.fixture
def stats(backend: str, storage: AzureStorage | None, db: SqliteDatabase) -> DeploymentStats:
    if backend == "memory":
        return MemoryDeploymentStats()
    if storage is None:
        return SqliteDeploymentStats(db)
    return AzureDeploymentStats(storage.table(unique("stats")))


@pytest.fixture
def reservation_instances(
    backend: str, storage: AzureStorage | None, db: SqliteDatabase, azurite_or_none: Azurite | None
) -> tuple[BudgetReservations, BudgetReservations]:
    """The reservations as two instances see them: one fake; two connections to one SQLite file; two Table
    clients (each with its own connection pool and per-tenant lock) on one table."""
    if backend == "memory":
        fake = MemoryBudgetReservations()
        return fake, fake
    if storage is None:
        return SqliteBudgetReservations(db), SqliteBudgetReservations(SqliteDatabase(db.path))
    assert azurite_or_none is not None
    name = unique("budgets")
    other = AzureStorage(StorageConnection(connection_string=azurite_or_none.connection_string()))
    return AzureBudgetReservations(storage.table(name)), AzureBudgetReservations(other.table(name))


@pytest.fixture
def reservations(reservation_instances: tuple[BudgetReservations, BudgetReservations]) -> BudgetReservations:
    return reservation_instances[0]


@pytest.fixture
def azurite_or_none(backend: str, request: pytest.FixtureRequest) -> Azurite | None:
    return request.getfixturevalue("azurite") if backend == "azure" else None


# The usage log's reading side (partitions, per-group checkpoints) is the embedded hosts' event source. On Azure
# the stream is an Event Hubs producer, and the Event Hubs emulator is Docker-only: no Azure case here (the
# producer is tested with the real SDK objects in tests/integration/test_usage_stream.py).
@pytest.fixture(params=["memory", "sqlite"])
def usage_log(request: pytest.FixtureRequest, db: SqliteDatabase) -> MemoryUsageLog | SqliteUsageLog:
    if request.param == "memory":
        return MemoryUsageLog(partitions=4)
    return SqliteUsageLog(db, partitions=4)
