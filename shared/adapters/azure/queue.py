"""The job queue on Azure Storage Queues, base64-encoded end to end like the Functions queue trigger.

A message the trigger could not decode (not base64) goes straight to `<queue>-poison`, as the Functions
Storage extension does: retrying it can't help, and handing it to a handler would hide a producer's mismatch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import TYPE_CHECKING

from azure.core.exceptions import HttpResponseError

from shared.adapters.azure.connection import CreateOnce
from shared.adapters.azure.encoding import NotBase64
from shared.adapters.azure.errors import status_of, translated
from shared.adapters.azure.probe import PING_OPTIONS, PING_TIMEOUT_S, ping
from shared.domain.errors import StorageUnavailable
from shared.domain.ports import ReceivedMessage

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient, QueueMessage

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024  # what a Storage Queue message may hold, after base64
ENVELOPE_ALLOWANCE = 1024  # job id, tenant, deployment and field names around an inline payload
# The largest inline payload whose base64-encoded message still fits (47 KiB).
MAX_INLINE_PAYLOAD_BYTES = MAX_MESSAGE_BYTES * 3 // 4 - ENVELOPE_ALLOWANCE
_RECEIVE_MAX = 32  # the service's per-call limit


def encoded_size(body: str) -> int:
    return 4 * math.ceil(len(body.encode("utf-8")) / 3)


class AzureJobQueue:
    ping_timeout_s = PING_TIMEOUT_S

    def __init__(self, client: QueueClient, poison: QueueClient | None = None) -> None:
        self.client = client
        self.name: str = client.queue_name
        self._poison = AzureJobQueue(poison) if poison is not None else None
        self._create = CreateOnce(f"queue {self.name}", client.create_queue)

    def poison_queue(self) -> AzureJobQueue:
        """`<queue>-poison`, where the trigger moves a message after maxDequeueCount deliveries."""
        if self._poison is None:
            raise StorageUnavailable(f"queue {self.name} has no poison queue")
        return self._poison

    def send(self, body: str, delay_s: float = 0) -> None:
        size = encoded_size(body)
        if size > MAX_MESSAGE_BYTES:
            raise StorageUnavailable(
                f"queue message of {size} bytes (base64) exceeds the {MAX_MESSAGE_BYTES}-byte limit; "
                f"payloads over INFERQ_INLINE_PAYLOAD_MAX_BYTES ({MAX_INLINE_PAYLOAD_BYTES} at most) go by blob"
            )
        self._create()
        with translated(f"send to queue {self.name}"):
            # Whole seconds on the wire: a delay is rounded up, so a deferred message never comes back early.
            self.client.send_message(body, visibility_timeout=math.ceil(delay_s) if delay_s > 0 else None)

    def receive(self, max_messages: int, visibility_timeout_s: float) -> list[ReceivedMessage]:
        if max_messages <= 0:
            return []
        self._create()
        count = min(max_messages, _RECEIVE_MAX)
        # The service counts visibility in whole seconds, at least one.
        timeout = max(1, math.ceil(visibility_timeout_s))
        with translated(f"receive from queue {self.name}"):
            messages = list(
                self.client.receive_messages(messages_per_page=count, max_messages=count, visibility_timeout=timeout)
            )
        received = []
        for m in messages:
            if isinstance(m.content, NotBase64) and self._poison is not None:
                self._quarantine(m)
                continue
            received.append(ReceivedMessage(m.id, str(m.content or ""), m.dequeue_count or 1, m.pop_receipt or ""))
        return received

    def delete(self, message: ReceivedMessage) -> None:
        with translated(f"delete from queue {self.name}"):
            try:
                self.client.delete_message(message.id, message.receipt)
            except HttpResponseError as exc:
                if not _lost(exc):
                    raise

    def release(self, message: ReceivedMessage) -> None:
        with translated(f"release in queue {self.name}"):
            try:
                self.client.update_message(message.id, message.receipt, visibility_timeout=0)
            except HttpResponseError as exc:
                if not _lost(exc):
                    raise

    def renew(self, message: ReceivedMessage, visibility_timeout_s: float) -> ReceivedMessage | None:
        with translated(f"renew in queue {self.name}"):
            try:
                updated = self.client.update_message(
                    message.id, message.receipt, visibility_timeout=max(1, math.ceil(visibility_timeout_s))
                )
            except HttpResponseError as exc:
                if _lost(exc):
                    return None
                raise
        return replace(message, receipt=updated.pop_receipt or message.receipt)

    def ping(self) -> None:
        ping(
            f"queue {self.name}",
            lambda: self.client.get_queue_properties(**PING_OPTIONS),
            timeout_s=self.ping_timeout_s,
        )

    def count(self) -> int:
        """Messages in the queue, visible or not (approximate, as the service reports it)."""
        self._create()
        with translated(f"count queue {self.name}"):
            return int(self.client.get_queue_properties().approximate_message_count or 0)

    def _quarantine(self, message: QueueMessage) -> None:
        assert self._poison is not None
        log.error(
            "message %s on queue %s is not base64 (host.json says messageEncoding: base64): moved to %s",
            message.id,
            self.name,
            self._poison.name,
        )
        self._poison.send(str(message.content))
        self.delete(ReceivedMessage(message.id, "", message.dequeue_count or 1, message.pop_receipt or ""))


def _lost(exc: HttpResponseError) -> bool:
    """The message is gone or another receiver holds it now (its pop receipt changed): nothing to do."""
    status, code = status_of(exc)
    return status == 404 or code == "PopReceiptMismatch"
