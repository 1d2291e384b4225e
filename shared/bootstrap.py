"""The one place that builds everything from settings: the adapters, the runtime registry and the three
handlers (gateway, worker, billing). Tests pass adapters in; nothing connects or loads at import."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache, partial

from shared.adapters.files import FileBlobStore
from shared.adapters.jwks import signing_keys
from shared.adapters.model_source import ModelSources
from shared.adapters.signals import InProcessJobSignals, WatchingJobSignals
from shared.adapters.sqlite.db import SqliteDatabase
from shared.adapters.sqlite.jobs import SqliteJobStore
from shared.adapters.sqlite.ledger import SqliteUsageLedger
from shared.adapters.sqlite.queue import SqliteJobQueue
from shared.adapters.sqlite.reservations import SqliteBudgetReservations
from shared.adapters.sqlite.stats import SqliteDeploymentStats
from shared.adapters.sqlite.usage_log import SqliteUsageLog
from shared.application.billing import Billing
from shared.application.budgets import BudgetGuard
from shared.application.credentials import ConfigWatch, Credentials
from shared.application.dispatch import Dispatcher
from shared.application.gateway import Gateway
from shared.application.readiness import ReadinessProbe
from shared.application.worker import Worker
from shared.bindings import JOB_QUEUE, POISON_QUEUE
from shared.domain.config import AppConfig, load_config
from shared.domain.errors import ConfigError
from shared.domain.jobs import Job, utcnow
from shared.domain.ports import (
    BlobStore,
    BudgetReservations,
    DeploymentStats,
    JobQueue,
    JobSignals,
    JobStore,
    ModelSource,
    Pingable,
    UsageLedger,
    UsageLog,
    UsageStream,
)
from shared.domain.routing import Router
from shared.runtimes.registry import RuntimeRegistry
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass
class Inferq:
    """Everything one process runs: the handlers the entry points call, and the ports the hosts drive."""

    settings: Settings
    config: AppConfig
    gateway: Gateway
    dispatcher: Dispatcher  # sends what a dead process left unsent
    worker: Worker
    billing: Billing
    readiness: ReadinessProbe
    registry: RuntimeRegistry
    queue: JobQueue
    poison: JobQueue  # where the Functions host moves a message after maxDequeueCount failed deliveries
    store: JobStore
    blobs: BlobStore
    stream: UsageStream
    ledger: UsageLedger
    stats: DeploymentStats
    reservations: BudgetReservations  # every instance's budget holds
    signals: JobSignals
    usage_log: UsageLog | None  # the embedded usage stream, which the local host consumes; None on Event Hubs
    queue_sent: threading.Event  # set when a job is queued, so the local host's pump need not wait


def bootstrap(
    settings: Settings,
    *,
    config: AppConfig | None = None,
    config_loader: Callable[[], AppConfig] | None = None,
    queue: JobQueue | None = None,
    poison: JobQueue | None = None,
    store: JobStore | None = None,
    blobs: BlobStore | None = None,
    stream: UsageStream | None = None,
    ledger: UsageLedger | None = None,
    stats: DeploymentStats | None = None,
    reservations: BudgetReservations | None = None,
    models: ModelSource | None = None,
    signals: JobSignals | None = None,
    registry: RuntimeRegistry | None = None,
    rng: random.Random | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    clock: Callable[[], datetime] = utcnow,
) -> Inferq:
    # A config read here (or by the caller's loader) is followed as the file changes, for its credentials; one
    # passed in (tests) stays as it is.
    watch = None
    if config is None:
        load = config_loader or (lambda: load_config(settings.config))
        config, watch = load(), ConfigWatch(settings.config, load, settings.config_reload_s)
    db = cache(lambda: SqliteDatabase(settings.db_path))  # opened only if an embedded adapter is used
    cross_process = settings.backend == "azure"
    if settings.backend == "azure":
        from shared.adapters.azure.factory import AzureAdapters  # the Azure SDKs load only for this backend

        logging.getLogger("azure").setLevel(settings.azure_log_level)

        azure = AzureAdapters.from_settings(settings)
        queue, store, blobs = queue or azure.queue, store or azure.store, blobs or azure.blobs
        poison = poison or (azure.queue.poison_queue() if queue is azure.queue else None)
        ledger, stream, stats = ledger or azure.ledger, stream or azure.stream, stats or azure.stats
        reservations = reservations or azure.reservations
        if stream is None:
            log.warning(
                "no Event Hubs connection (EventHubConnection): usage events go to the embedded log in %s",
                settings.db_path,
            )
    elif settings.backend != "sqlite":
        raise ConfigError(f"INFERQ_BACKEND={settings.backend} is not available in this build")
    if queue is None:
        embedded = SqliteJobQueue(db(), JOB_QUEUE)
        queue, poison = embedded, poison or SqliteJobQueue(db(), POISON_QUEUE)
    if poison is None:
        raise ConfigError(f"no poison queue given for {type(queue).__name__}")
    usage_log = None
    if stream is None:
        stream = usage_log = SqliteUsageLog(db(), settings.usage_partitions)
    store = store or SqliteJobStore(db())
    blobs = blobs or FileBlobStore(settings.data_dir / "blobs")
    ledger = ledger or SqliteUsageLedger(db())
    stats = stats or SqliteDeploymentStats(db())
    reservations = reservations or SqliteBudgetReservations(db())
    # Jobs may end on other instances only with Azure storage: there one watcher per instance reads them.
    signals = signals or (WatchingJobSignals(store) if cross_process else InProcessJobSignals())
    # Set whenever a job is queued here, so a pump in this process (the local host's) need not wait for a poll.
    queue_sent: threading.Event = getattr(queue, "sent", None) or threading.Event()
    router = Router(
        config, rng or (random.Random(settings.routing_seed) if settings.routing_seed is not None else None)
    )
    registry = registry or RuntimeRegistry(settings, models or ModelSources.from_settings(settings))
    dispatcher = Dispatcher(
        store=store,
        queue=queue,
        blobs=blobs,
        resend_after_s=settings.resend_unsent_after_s,
        enqueued=queue_sent.set,
        create_queued=_create_queued(store, queue),
    )
    gateway = Gateway(
        settings=settings,
        config=config,
        router=router,
        queue=queue,
        store=store,
        blobs=blobs,
        signals=signals,
        budgets=BudgetGuard(
            ledger,
            reservations,
            config,
            settings.budget_cache_s,
            settings.budget_ingest_lag_s,
            settings.budget_hold_s,
            clock=clock,  # when holds lapse, and costs settled elsewhere are billed: wall time, shared
        ),
        registry=registry,
        cross_process=cross_process,
        dispatcher=dispatcher,
        stream=stream,
        stats=stats,
        credentials=Credentials(
            config,
            keys_for=lambda issuer: signing_keys(
                issuer,
                cache_s=settings.jwks_cache_s,
                refresh_min_s=settings.jwks_refresh_min_s,
                timeout_s=settings.jwks_timeout_s,
            ),
            leeway_s=settings.auth_leeway_s,
            watch=watch,
        ),
        monotonic=monotonic,  # the rate limiters' clock
    )
    worker = Worker(
        settings=settings,
        config=config,
        router=router,
        store=store,
        blobs=blobs,
        stream=stream,
        stats=stats,
        signals=signals,
        registry=registry,
        queue=queue,
        cross_process=cross_process,
    )
    billing = Billing(
        settings=settings, config=config, router=router, ledger=ledger, blobs=blobs, stats=stats, jobs=store
    )
    probes: dict[str, Pingable] = {
        "job queue": queue,
        "job store": store,
        "blob store": blobs,
        "usage stream": stream,
        "usage ledger": ledger,
        "deployment stats": stats,
        "budget reservations": reservations,
    }
    return Inferq(
        settings=settings,
        config=config,
        gateway=gateway,
        dispatcher=dispatcher,
        worker=worker,
        billing=billing,
        readiness=ReadinessProbe(probes),
        registry=registry,
        queue=queue,
        poison=poison,
        store=store,
        blobs=blobs,
        stream=stream,
        ledger=ledger,
        stats=stats,
        reservations=reservations,
        signals=signals,
        usage_log=usage_log,
        queue_sent=queue_sent,
    )


def _create_queued(store: JobStore, queue: JobQueue) -> Callable[[Job, str], Job] | None:
    """One transaction for a job and its message, when both live in the same embedded database."""
    if isinstance(store, SqliteJobStore) and isinstance(queue, SqliteJobQueue) and store.db is queue.db:
        return partial(store.create_queued, queue)
    return None


_override: Inferq | None = None


def set_app(app: Inferq | None) -> None:
    """The local host and tests install what they built; on Azure it is built from settings on first use."""
    global _override
    _override = app
    get_app.cache_clear()


@lru_cache(maxsize=1)
def get_app() -> Inferq:
    return _override if _override is not None else bootstrap(get_settings())
