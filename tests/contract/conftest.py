"""Every port's adapters behind one parametrised fixture: each contract test runs on SQLite and on Azure
(Azurite), so the adapters can't drift apart."""

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
from shared.adapters.azure.stats import AzureDeploymentStats
from shared.adapters.files import FileBlobStore
from shared.adapters.sqlite.db import SqliteDatabase
from shared.adapters.sqlite.jobs import SqliteJobStore
from shared.adapters.sqlite.ledger import SqliteUsageLedger
from shared.adapters.sqlite.queue import SqliteJobQueue
from shared.adapters.sqlite.stats import SqliteDeploymentStats
from shared.domain.ports import BlobStore, DeploymentStats, JobQueue, JobStore, UsageLedger
from tests.azurite import Azurite, unique


@dataclass
class Queues:
    queue: JobQueue
    poison: JobQueue

    def count(self, queue: JobQueue) -> int:
        assert isinstance(queue, SqliteJobQueue | AzureJobQueue)
        return queue.count()


@pytest.fixture(params=["sqlite", "azure"])
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
def queues(storage: AzureStorage | None, db: SqliteDatabase) -> Queues:
    if storage is None:
        return Queues(SqliteJobQueue(db, "jobs"), SqliteJobQueue(db, "jobs-poison"))
    name = unique("jobs")
    azure = AzureJobQueue(storage.queue(name), poison=storage.queue(f"{name}-poison"))
    return Queues(azure, azure.poison_queue())


@pytest.fixture
def blobs(storage: AzureStorage | None, tmp_path: Path) -> BlobStore:
    if storage is None:
        return FileBlobStore(tmp_path / "blobs")
    return AzureBlobStore(storage.container(unique("blobs")))


@pytest.fixture
def store(storage: AzureStorage | None, db: SqliteDatabase, blobs: BlobStore) -> Iterator[JobStore]:
    if storage is None:
        yield SqliteJobStore(db)
        return
    assert isinstance(blobs, AzureBlobStore)
    yield AzureJobStore(storage.table(unique("jobs")), blobs)


@pytest.fixture
def ledger(storage: AzureStorage | None, db: SqliteDatabase) -> UsageLedger:
    if storage is None:
        return SqliteUsageLedger(db)
    return AzureUsageLedger(storage.table(unique("usage")))


@pytest.fixture
def stats(storage: AzureStorage | None, db: SqliteDatabase) -> DeploymentStats:
    if storage is None:
        return SqliteDeploymentStats(db)
    return AzureDeploymentStats(storage.table(unique("stats")))
