"""Usage events to Event Hubs: one producer per process, built on first publish and reused; events grouped by
tenant into `EventDataBatch`es keyed by the tenant (one partition per tenant keeps its events in order), a new
batch when one is full. Failures (after the client's bounded retries) are StorageUnavailable: the service keeps
the usage on the job and publishes it later (Invariant 7). `ping` asks for the hub's properties on a producer of
its own (without retries), so a probe never waits behind a publish."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from azure.eventhub import EventData, EventDataBatch
from azure.eventhub.exceptions import EventHubError

from shared import telemetry
from shared.adapters.azure.connection import default_credential, parse_connection_string
from shared.adapters.azure.errors import translated
from shared.adapters.azure.probe import PING_TIMEOUT_S, ping
from shared.bindings import USAGE_HUB
from shared.domain.errors import ConfigError, StorageUnavailable
from shared.schemas.usage import UsageEvent
from shared.settings import Settings

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/json"
TRACEPARENT = "traceparent"  # the W3C trace context, as an application property (Event Hubs' own convention)


class Producer(Protocol):
    """What the stream needs of `EventHubProducerClient`."""

    def create_batch(self, *, partition_key: str | None = None) -> EventDataBatch: ...
    def send_batch(self, event_data_batch: EventDataBatch, *, timeout: float | None = None) -> None: ...
    def get_eventhub_properties(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


def serialise(event: UsageEvent, traceparent: str | None = None) -> EventData:
    """The event's JSON (what `UsageEvent.model_validate_json` reads back from the trigger's body), and the trace
    that produced it as the application property `traceparent` (which the billing trigger continues)."""
    data = EventData(event.model_dump_json())
    data.content_type = CONTENT_TYPE
    if traceparent:
        data.properties = {TRACEPARENT: traceparent}
    return data


def build_batches(
    events: Sequence[UsageEvent], new_batch: Callable[[str], EventDataBatch], traceparent: str | None = None
) -> list[EventDataBatch]:
    """Group by tenant (first-seen order), one batch per tenant keyed by it, split when a batch is full."""
    by_tenant: dict[str, list[UsageEvent]] = {}
    for e in events:
        by_tenant.setdefault(e.tenant, []).append(e)
    batches: list[EventDataBatch] = []
    for tenant, group in by_tenant.items():
        batch = new_batch(tenant)
        for event in group:
            data = serialise(event, traceparent)
            try:
                batch.add(data)
            except ValueError:  # full
                if len(batch) == 0:
                    raise StorageUnavailable(
                        f"usage event {event.id} does not fit an empty batch of {batch.max_size_in_bytes} bytes"
                    ) from None
                batches.append(batch)
                batch = new_batch(tenant)
                batch.add(data)
        batches.append(batch)
    return batches


class AzureUsageStream:
    ping_timeout_s = PING_TIMEOUT_S

    def __init__(
        self,
        connect: Callable[[], Producer],
        send_timeout_s: float = 10.0,
        ping_connect: Callable[[], Producer] | None = None,
    ) -> None:
        self._connect = connect
        self._send_timeout_s = send_timeout_s
        self._producer: Producer | None = None
        # The sync producer is not documented as thread-safe; the worker's threads take turns (sends are short).
        self._lock = threading.Lock()
        self._ping_connect = ping_connect or connect
        self._ping_producer: Producer | None = None
        self._ping_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> AzureUsageStream | None:
        """None when no Event Hubs connection is configured."""
        if not (settings.eventhub_connection or settings.eventhub_namespace):
            return None
        return cls(
            lambda: producer_from_settings(settings),
            settings.eventhub_send_timeout_s,
            ping_connect=lambda: producer_from_settings(settings, retry_total=0),
        )

    def ping(self) -> None:
        ping(
            "usage stream (Event Hubs)", self._hub_properties, timeout_s=self.ping_timeout_s, transient=(EventHubError,)
        )

    def _hub_properties(self) -> None:
        with self._ping_lock:  # a probe still waiting for an answer holds it: the next one times out, as it should
            producer = self._ping_producer or self._ping_connect()
            self._ping_producer = producer
            try:
                producer.get_eventhub_properties()
            except Exception:
                self._ping_producer = None
                _close_quietly(producer)
                raise

    def publish(self, events: Sequence[UsageEvent]) -> None:
        if not events:
            return
        with self._lock, translated("publish usage events", transient=(EventHubError,)):
            producer = self._producer or self._connect()
            self._producer = producer
            try:
                batches = build_batches(
                    events, lambda tenant: producer.create_batch(partition_key=tenant), telemetry.traceparent()
                )
                for batch in batches:
                    producer.send_batch(batch, timeout=self._send_timeout_s)
            except Exception:
                # A client that failed is rebuilt on the next publish rather than trusted.
                self._producer = None
                _close_quietly(producer)
                raise

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                _close_quietly(self._producer)
                self._producer = None
        if self._ping_lock.acquire(timeout=self.ping_timeout_s):  # a probe stuck in the SDK can keep its producer
            try:
                if self._ping_producer is not None:
                    _close_quietly(self._ping_producer)
                    self._ping_producer = None
            finally:
                self._ping_lock.release()


def producer_from_settings(settings: Settings, *, retry_total: int | None = None) -> Producer:
    from azure.eventhub import EventHubProducerClient

    retry: dict[str, Any] = {
        "retry_total": settings.eventhub_retry_total if retry_total is None else retry_total,
        "retry_backoff_factor": 0.5,
        "retry_backoff_max": 5,
    }
    if settings.eventhub_connection:
        hub = None if "EntityPath" in parse_connection_string(settings.eventhub_connection) else USAGE_HUB
        try:
            return EventHubProducerClient.from_connection_string(
                settings.eventhub_connection, eventhub_name=hub, **retry
            )
        except ValueError as exc:
            raise ConfigError(f"EventHubConnection is not a valid Event Hubs connection string: {exc}") from exc
    if not settings.eventhub_namespace:
        raise ConfigError("set EventHubConnection or EventHubConnection__fullyQualifiedNamespace")
    return EventHubProducerClient(
        fully_qualified_namespace=settings.eventhub_namespace,
        eventhub_name=USAGE_HUB,
        credential=default_credential(settings.eventhub_client_id),
        **retry,
    )


def _close_quietly(producer: Producer) -> None:
    try:
        producer.close()
    except Exception:  # closing a broken client may fail too; the next publish starts afresh
        log.debug("closing the Event Hubs producer failed", exc_info=True)
