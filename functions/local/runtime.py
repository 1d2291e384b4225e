"""The local host's stand-in for the Functions runtime: it delivers queue messages and usage events to the
very same function objects Azure calls, with the same retry and poison rules (host.json)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import azure.functions as func
from azure.functions.meta import Datum
from azure.functions.queue import QueueMessage as TriggerQueueMessage

from shared.bindings import BILLING_CONSUMER_GROUP
from shared.domain.ports import JobQueue, LoggedEvent, ReceivedMessage, UsageLog

log = logging.getLogger(__name__)


class QueuePump:
    """Receive → call the trigger → delete on success; on failure release, and after `max_dequeue_count`
    deliveries move the message to the poison queue (what the Functions queue extension does)."""

    def __init__(
        self,
        queue: JobQueue,
        handler: Callable[[func.QueueMessage], None],
        *,
        poison: JobQueue | None,
        max_dequeue_count: int,
        visibility_timeout_s: float,
        concurrency: int,
        wake: threading.Event | None = None,
    ) -> None:
        self.queue, self.handler, self.poison = queue, handler, poison
        self.wake = wake  # set when a slot frees up, so waiting messages don't sit out a poll interval
        self.max_dequeue_count = max_dequeue_count
        self.visibility_timeout_s = visibility_timeout_s
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix=f"pump-{queue.name}")
        self._slots = threading.Semaphore(concurrency)
        self._concurrency = concurrency
        # Messages being handled, with when to renew them: a job longer than the visibility timeout must not
        # be delivered again while it runs (the Functions host renews a running invocation's message too).
        self._held: dict[str, tuple[ReceivedMessage, float]] = {}
        self._held_lock = threading.Lock()

    def pump_once(self) -> int:
        """Renew the messages being handled, then hand every message visible now (up to free slots) to the
        handler; returns how many were handed over."""
        self.renew_held()
        free = 0
        while free < self._concurrency and self._slots.acquire(blocking=False):
            free += 1
        messages = self.queue.receive(free, self.visibility_timeout_s) if free else []
        for _ in range(free - len(messages)):
            self._slots.release()
        for message in messages:
            future = self._pool.submit(self.deliver, message)
            future.add_done_callback(self._release_slot)
        return len(messages)

    def _release_slot(self, _: Future[Any]) -> None:
        self._slots.release()
        if self.wake is not None:
            self.wake.set()

    def renew_held(self) -> None:
        now = time.monotonic()
        with self._held_lock:
            due = [m for m, renew_at in self._held.values() if renew_at <= now]
        for message in due:
            renewed = self.queue.renew(message, self.visibility_timeout_s)
            with self._held_lock:
                if message.id in self._held:
                    if renewed is None:
                        del self._held[message.id]  # someone else holds it now: nothing left to renew
                    else:
                        self._held[message.id] = (renewed, now + self.visibility_timeout_s / 2)

    def _hold(self, message: ReceivedMessage) -> None:
        with self._held_lock:
            self._held[message.id] = (message, time.monotonic() + self.visibility_timeout_s / 2)

    def _unhold(self, message: ReceivedMessage) -> ReceivedMessage:
        """The message as last renewed (its receipt is what delete and release need)."""
        with self._held_lock:
            held = self._held.pop(message.id, None)
        return held[0] if held else message

    def deliver(self, message: ReceivedMessage) -> None:
        self._hold(message)
        trigger_message = TriggerQueueMessage(  # type: ignore[no-untyped-call]  # what the worker builds
            id=message.id,
            body=message.body.encode("utf-8"),
            dequeue_count=message.dequeue_count,
            pop_receipt=message.receipt,
        )
        try:
            self.handler(trigger_message)
        except Exception as exc:
            message = self._unhold(message)
            log.warning("delivery %d of message %s failed: %s", message.dequeue_count, message.id, exc)
            if self.poison is not None and message.dequeue_count >= self.max_dequeue_count:
                self.poison.send(message.body)
                self.queue.delete(message)
            else:
                self.queue.release(message)
            return
        self.queue.delete(self._unhold(message))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


class UsageConsumer:
    """Reads the embedded usage log per partition, hands each batch to the Event Hub trigger as real
    `func.EventHubEvent`s, then checkpoints — whether the function succeeded or not, like the trigger."""

    def __init__(
        self,
        log_: UsageLog,
        handler: Callable[[list[func.EventHubEvent]], None],
        consumer_group: str = BILLING_CONSUMER_GROUP,
        max_batch: int = 256,
    ) -> None:
        self.log, self.handler, self.group, self.max_batch = log_, handler, consumer_group, max_batch

    def consume_once(self) -> int:
        total = 0
        for partition in range(self.log.partitions):
            batch = self.log.read(self.group, partition, self.max_batch)
            if not batch:
                continue
            metadata = _properties_metadata(batch)
            events = [
                func.EventHubEvent(
                    body=e.body.encode("utf-8"),
                    trigger_metadata=metadata,
                    sequence_number=e.offset,
                    offset=str(e.offset),
                    partition_key=None,
                )
                for e in batch
            ]
            try:
                self.handler(events)
            except Exception:
                log.exception("billing function failed; the batch is checkpointed anyway, as on Azure")
            self.log.checkpoint(self.group, partition, batch[-1].offset)
            total += len(batch)
        return total


def _properties_metadata(batch: list[LoggedEvent]) -> dict[str, Datum] | None:
    """The events' application properties as the Functions host hands them to a cardinality-many trigger: one
    `PropertiesArray` entry per event (here only `traceparent`, the one the log keeps); None when none has any."""
    if not any(e.traceparent for e in batch):
        return None
    properties = [{"traceparent": e.traceparent} if e.traceparent else {} for e in batch]
    return {"PropertiesArray": Datum(json.dumps(properties), "json")}


class Loop:
    """Call `step` until stopped; when it had nothing to do, sleep `interval_s`, doubled after every idle step up
    to `max_interval_s` (the Functions queue listener's backoff), or until woken."""

    def __init__(
        self,
        name: str,
        step: Callable[[], int],
        interval_s: float,
        wake: threading.Event | None = None,
        max_interval_s: float | None = None,
    ) -> None:
        self._step, self._interval = step, interval_s
        self._max_interval = max(interval_s, max_interval_s or interval_s)
        self._stop = threading.Event()
        self._wake = wake or self._stop
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        idle_s = self._interval
        while not self._stop.is_set():
            try:
                busy = self._step()
            except Exception:
                log.exception("%s: step failed", self._thread.name)
                busy = 0
            if busy:
                idle_s = self._interval
                continue
            woken = self._wake.wait(idle_s)
            if self._wake is not self._stop:
                self._wake.clear()
            idle_s = self._interval if woken else min(idle_s * 2, self._max_interval)
