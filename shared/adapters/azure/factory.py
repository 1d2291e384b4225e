"""Every Azure adapter from settings, for `shared.bootstrap` (which imports this module only for the Azure
backend)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.adapters.azure.blobs import AzureBlobStore
from shared.adapters.azure.connection import AzureStorage, StorageConnection
from shared.adapters.azure.jobs import AzureJobStore
from shared.adapters.azure.ledger import AzureUsageLedger
from shared.adapters.azure.queue import MAX_INLINE_PAYLOAD_BYTES, AzureJobQueue
from shared.adapters.azure.reservations import AzureBudgetReservations
from shared.adapters.azure.stats import AzureDeploymentStats
from shared.adapters.azure.usage_stream import AzureUsageStream
from shared.bindings import (
    BUDGETS_TABLE,
    JOB_QUEUE,
    JOBS_TABLE,
    LEDGER_TABLE,
    PAYLOAD_CONTAINER,
    POISON_QUEUE,
    STATS_TABLE,
)
from shared.domain.errors import ConfigError
from shared.settings import Settings


@dataclass(frozen=True)
class AzureAdapters:
    storage: AzureStorage
    queue: AzureJobQueue
    store: AzureJobStore
    blobs: AzureBlobStore
    ledger: AzureUsageLedger
    stats: AzureDeploymentStats
    reservations: AzureBudgetReservations
    stream: AzureUsageStream | None  # None without an Event Hubs connection

    @classmethod
    def from_settings(cls, settings: Settings) -> AzureAdapters:
        if settings.inline_payload_max_bytes > MAX_INLINE_PAYLOAD_BYTES:
            raise ConfigError(
                f"INFERQ_INLINE_PAYLOAD_MAX_BYTES={settings.inline_payload_max_bytes} is too large for Storage "
                f"Queues: base64-encoded, the message would pass 64 KiB (at most {MAX_INLINE_PAYLOAD_BYTES})"
            )
        storage = AzureStorage(StorageConnection.from_settings(settings))
        blobs = AzureBlobStore(storage.container(PAYLOAD_CONTAINER))
        return cls(
            storage=storage,
            queue=AzureJobQueue(storage.queue(JOB_QUEUE), poison=storage.queue(POISON_QUEUE)),
            store=AzureJobStore(storage.table(JOBS_TABLE), blobs),
            blobs=blobs,
            ledger=AzureUsageLedger(storage.table(LEDGER_TABLE)),
            stats=AzureDeploymentStats(storage.table(STATS_TABLE)),
            reservations=AzureBudgetReservations(storage.table(BUDGETS_TABLE)),
            stream=AzureUsageStream.from_settings(settings),
        )
