"""A job queue in memory with Azure Storage Queue semantics (visibility timeout, dequeue count, pop receipt),
the same as `SqliteJobQueue`'s; time comes from an injectable clock."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

from shared.domain.ports import ReceivedMessage


@dataclass
class _Message:
    id: str
    body: str
    seq: int  # send order: breaks ties between messages that became visible at the same instant
    visible_at: float
    dequeue_count: int = 0
    receipt: str | None = None


class MemoryJobQueue:
    def __init__(self, name: str = "jobs", *, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._messages: dict[str, _Message] = {}
        self._seq = itertools.count()
        # Like `SqliteJobQueue.sent`: the local host's receivers wait on it instead of polling.
        self.sent = threading.Event()

    def ping(self) -> None:
        """Memory always answers."""

    def send(self, body: str, delay_s: float = 0) -> None:
        with self._lock:
            message = _Message(uuid.uuid4().hex, body, next(self._seq), self._clock() + delay_s)
            self._messages[message.id] = message
        self.sent.set()

    def receive(self, max_messages: int, visibility_timeout_s: float) -> list[ReceivedMessage]:
        if max_messages <= 0:
            return []
        with self._lock:
            now = self._clock()
            visible = sorted(
                (m for m in self._messages.values() if m.visible_at <= now), key=lambda m: (m.visible_at, m.seq)
            )
            received = []
            for m in visible[:max_messages]:
                m.visible_at, m.dequeue_count, m.receipt = (
                    now + visibility_timeout_s,
                    m.dequeue_count + 1,
                    uuid.uuid4().hex,
                )
                received.append(ReceivedMessage(m.id, m.body, m.dequeue_count, m.receipt))
        return received

    def delete(self, message: ReceivedMessage) -> None:
        with self._lock:
            if self._held(message) is not None:
                del self._messages[message.id]

    def release(self, message: ReceivedMessage) -> None:
        with self._lock:
            held = self._held(message)
            if held is not None:
                held.visible_at = self._clock()

    def renew(self, message: ReceivedMessage, visibility_timeout_s: float) -> ReceivedMessage | None:
        with self._lock:
            held = self._held(message)
            if held is None:
                return None
            held.visible_at, held.receipt = self._clock() + visibility_timeout_s, uuid.uuid4().hex
            return replace(message, receipt=held.receipt)

    def count(self) -> int:
        """Messages in the queue, visible or not (for tests and the local host's status)."""
        with self._lock:
            return len(self._messages)

    def _held(self, message: ReceivedMessage) -> _Message | None:
        """The stored message if `message`'s receipt still owns it (a stale receipt changes nothing)."""
        stored = self._messages.get(message.id)
        return stored if stored is not None and stored.receipt == message.receipt else None
