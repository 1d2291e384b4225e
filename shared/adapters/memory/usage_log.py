"""An append-only usage event log in memory, shaped like Event Hubs and like `SqliteUsageLog`: partitions by
key (the same partitioner), offsets, and per-consumer-group checkpoints. The in-memory `UsageStream`."""

from __future__ import annotations

import threading
from collections.abc import Sequence

# The log's shape and its partitioner are the embedded log's own: the same tenant lands in the same partition.
from shared import telemetry
from shared.domain.ports import LoggedEvent, partition_for
from shared.schemas.usage import UsageEvent


class MemoryUsageLog:
    def __init__(self, partitions: int = 4) -> None:
        self.partitions = partitions
        self._lock = threading.Lock()
        # Per partition, the body at each offset and its traceparent.
        self._log: list[list[tuple[str, str | None]]] = [[] for _ in range(partitions)]
        self._checkpoints: dict[tuple[str, int], int] = {}  # (consumer group, partition) → last offset done

    def ping(self) -> None:
        """Memory always answers."""

    def publish(self, events: Sequence[UsageEvent]) -> None:
        self.append([(e.tenant, e.model_dump_json()) for e in events], telemetry.traceparent())

    def append(self, keyed_bodies: Sequence[tuple[str, str]], traceparent: str | None = None) -> None:
        """Append raw bodies under partition keys (what any producer can write, valid or not)."""
        with self._lock:
            for key, body in keyed_bodies:
                self._log[partition_for(key, self.partitions)].append((body, traceparent))

    def read(self, consumer_group: str, partition: int, max_events: int) -> list[LoggedEvent]:
        """Events after the group's checkpoint on that partition, oldest first."""
        with self._lock:
            start = self._checkpoints.get((consumer_group, partition), -1) + 1
            bodies = (
                self._log[partition][start : start + max(max_events, 0)] if 0 <= partition < self.partitions else []
            )
        return [LoggedEvent(partition, start + i, body, tp) for i, (body, tp) in enumerate(bodies)]

    def checkpoint(self, consumer_group: str, partition: int, offset: int) -> None:
        with self._lock:
            self._checkpoints[(consumer_group, partition)] = offset
