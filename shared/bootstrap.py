"""The one place that builds the service from settings. Tests pass adapters in; nothing happens at import."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from functools import cache, lru_cache

from shared.adapters.files import FileBlobStore
from shared.adapters.model_source import ModelSources
from shared.adapters.sqlite.db import SqliteDatabase
from shared.adapters.sqlite.jobs import SqliteJobStore
from shared.adapters.sqlite.ledger import SqliteUsageLedger
from shared.adapters.sqlite.queue import SqliteJobQueue
from shared.adapters.sqlite.stats import SqliteDeploymentStats
from shared.adapters.sqlite.usage_log import SqliteUsageLog
from shared.application.gateway import InferenceService
from shared.bindings import JOB_QUEUE, POISON_QUEUE
from shared.domain.config import AppConfig, load_config
from shared.domain.errors import ConfigError
from shared.domain.ports import BlobStore, DeploymentStats, JobQueue, JobStore, ModelSource, UsageLedger, UsageStream
from shared.runtimes.registry import RunnerPool
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)


def bootstrap(
    settings: Settings,
    *,
    config: AppConfig | None = None,
    queue: JobQueue | None = None,
    store: JobStore | None = None,
    blobs: BlobStore | None = None,
    stream: UsageStream | None = None,
    ledger: UsageLedger | None = None,
    stats: DeploymentStats | None = None,
    models: ModelSource | None = None,
    rng: random.Random | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> InferenceService:
    if settings.backend == "azure":
        from shared.adapters.azure.factory import AzureAdapters  # the Azure SDKs load only for this backend

        azure = AzureAdapters.from_settings(settings)
        queue, store, blobs = queue or azure.queue, store or azure.store, blobs or azure.blobs
        ledger, stream, stats = ledger or azure.ledger, stream or azure.stream, stats or azure.stats
        if stream is None:
            log.warning(
                "no Event Hubs connection (EventHubConnection): usage events go to the embedded log in %s",
                settings.db_path,
            )
    elif settings.backend != "sqlite":
        raise ConfigError(f"INFERQ_BACKEND={settings.backend} is not available in this build")
    db = cache(lambda: SqliteDatabase(settings.db_path))  # opened only if an embedded adapter is used
    return InferenceService(
        settings=settings,
        config=config or load_config(settings.config),
        queue=queue or SqliteJobQueue(db(), JOB_QUEUE),
        store=store or SqliteJobStore(db()),
        blobs=blobs or FileBlobStore(settings.data_dir / "blobs"),
        stream=stream or SqliteUsageLog(db(), settings.usage_partitions),
        ledger=ledger or SqliteUsageLedger(db()),
        stats=stats or SqliteDeploymentStats(db()),
        runners=RunnerPool(settings, models or ModelSources.from_settings(settings)),
        rng=rng or (random.Random(settings.routing_seed) if settings.routing_seed is not None else None),
        monotonic=monotonic,  # the rate limiters' clock
    )


def poison_queue(service: InferenceService) -> JobQueue:
    """The queue the Functions host moves a message to after maxDequeueCount failed deliveries."""
    queue = service.queue
    if isinstance(queue, SqliteJobQueue):
        return SqliteJobQueue(queue.db, POISON_QUEUE)
    from shared.adapters.azure.queue import AzureJobQueue  # not imported on the embedded path above

    if isinstance(queue, AzureJobQueue):
        return queue.poison_queue()
    raise ConfigError(f"no poison queue for {type(queue).__name__}")


_override: InferenceService | None = None


def set_service(service: InferenceService | None) -> None:
    """The local host and tests install the service they built; Azure builds one from settings."""
    global _override
    _override = service
    get_service.cache_clear()


@lru_cache(maxsize=1)
def get_service() -> InferenceService:
    return _override if _override is not None else bootstrap(get_settings())
