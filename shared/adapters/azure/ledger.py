"""The usage ledger on Table storage. A tenant's event rows (`evt|<event id>`) and hourly totals
(`hour|<hour>|<deployment>|<meter>`) share its partition, so one entity-group transaction records the events
and adds their tokens to the totals: both land or neither does (Invariant 2).

Creating an `evt|` row that exists fails the whole transaction: the rows that exist are found, dropped as
duplicates, and the rest retried. Totals are replaced only if their ETag is unchanged (or created only if
absent), so two consumers can't lose each other's increments. An event's id is unique in the tenant's partition
whatever its time, so a redelivery with another timestamp is still a duplicate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.data.tables import TableTransactionError, UpdateMode

from shared.adapters.azure.connection import CreateOnce
from shared.adapters.azure.errors import translated
from shared.adapters.azure.probe import PING_TIMEOUT_S
from shared.adapters.azure.tables import as_int, int64, ping_table, table_key
from shared.domain.billing import hour_of
from shared.domain.errors import ConcurrencyConflict, NotFound
from shared.domain.ports import IngestResult, UsageTotal
from shared.schemas.usage import UsageEvent

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableEntity

MAX_OPERATIONS = 100  # per entity-group transaction
_FILTER_KEYS = 14  # a $filter allows 15 comparisons: the partition and 14 row keys
TotalKey = tuple[str, str, str]  # hour text, deployment, meter


def hour_text(moment: datetime) -> str:
    h = hour_of(moment)
    return f"{h.year:04d}-{h.month:02d}-{h.day:02d}T{h.hour:02d}"  # fixed width: text order is time order


def event_row(event_id: str) -> str:
    return "evt|" + table_key(event_id)


def total_row(key: TotalKey) -> str:
    hour, deployment, meter = key
    return f"hour|{hour}|{table_key(deployment)}|{table_key(meter)}"


@dataclass
class _Chunk:
    events: list[UsageEvent]

    def totals(self) -> dict[TotalKey, int]:
        sums: dict[TotalKey, int] = defaultdict(int)
        for e in self.events:
            if not e.mirrored:
                sums[(hour_text(e.time), e.deployment, e.meter.value)] += e.tokens
        return sums


class AzureUsageLedger:
    ping_timeout_s = PING_TIMEOUT_S

    def __init__(self, table: TableClient, max_attempts: int = 10) -> None:
        self.table = table
        self.max_attempts = max_attempts
        self._create = CreateOnce(f"table {table.table_name}", table.create_table)

    def ping(self) -> None:
        ping_table(self.table, self.ping_timeout_s)

    def ingest(self, events: Sequence[UsageEvent]) -> IngestResult:
        self._create()
        by_tenant: dict[str, dict[str, UsageEvent]] = defaultdict(dict)
        duplicates = 0
        for e in events:
            if e.id in by_tenant[e.tenant]:
                duplicates += 1  # a repeat inside the batch: the first copy counts
            else:
                by_tenant[e.tenant][e.id] = e
        billed = 0
        for tenant, unique in by_tenant.items():
            for chunk in _chunks(list(unique.values())):
                b, d = self._ingest_chunk(tenant, chunk)
                billed, duplicates = billed + b, duplicates + d
        return IngestResult(billed=billed, duplicates=duplicates)

    def hourly_totals(self, tenant: str | None, start: datetime, end: datetime) -> list[UsageTotal]:
        """Totals of the hours that start in [hour of `start`, `end`)."""
        end_hour = hour_of(end)
        upper = end_hour if end_hour == end.astimezone(UTC) else end_hour + timedelta(hours=1)
        query = "RowKey ge @lo and RowKey lt @hi"
        parameters = {"lo": f"hour|{hour_text(start)}", "hi": f"hour|{hour_text(upper)}"}
        if tenant is not None:
            query = "PartitionKey eq @pk and " + query
            parameters["pk"] = table_key(tenant)
        self._create()
        with translated("usage totals"):
            rows = list(self.table.query_entities(query, parameters=parameters))
        totals = [
            UsageTotal(
                datetime.fromisoformat(r["hour"] + ":00:00+00:00"),
                r["tenant"],
                r["deployment"],
                r["meter"],
                as_int(r["tokens"]),
            )
            for r in rows
        ]
        return sorted(totals, key=lambda t: (t.period_start, t.tenant, t.deployment, t.meter))

    # --- one partition, one transaction ---------------------------------------------------------------------
    def _ingest_chunk(self, tenant: str, chunk: _Chunk) -> tuple[int, int]:
        partition = table_key(tenant)
        pending = chunk.events
        duplicates = 0
        for _ in range(self.max_attempts):
            if not pending:
                break
            totals = _Chunk(pending).totals()
            operations: list[Any] = [("create", self._event_entity(partition, e)) for e in pending]
            operations += [self._total_operation(partition, tenant, key, tokens) for key, tokens in totals.items()]
            try:
                with translated(f"usage ledger of tenant {tenant}"):
                    try:
                        self.table.submit_transaction(operations)
                    except TableTransactionError as exc:
                        if exc.status_code not in (409, 412):
                            raise
                        # Some events are recorded already, or the totals moved: drop the former, re-read, retry.
                        recorded = self._recorded(partition, [e.id for e in pending])
                        duplicates += len(recorded)
                        pending = [e for e in pending if e.id not in recorded]
                        continue
            except ConcurrencyConflict:
                continue
            return sum(not e.mirrored for e in pending), duplicates
        if pending:
            raise ConcurrencyConflict(f"usage ledger of tenant {tenant}: too many concurrent updates")
        return 0, duplicates

    def _event_entity(self, partition: str, e: UsageEvent) -> dict[str, Any]:
        return {
            "PartitionKey": partition,
            "RowKey": event_row(e.id),
            "id": e.id,
            "tenant": e.tenant,
            "deployment": e.deployment,
            "meter": e.meter.value,
            "hour": hour_text(e.time),
            "tokens": int64(e.tokens),
            "mirrored": e.mirrored,
            "job_id": e.job_id,
            "key_id": e.key_id,
            "time": e.time.isoformat(),
        }

    def _total_operation(self, partition: str, tenant: str, key: TotalKey, tokens: int) -> Any:
        hour, deployment, meter = key
        entity: dict[str, Any] = {
            "PartitionKey": partition,
            "RowKey": total_row(key),
            "tenant": tenant,
            "hour": hour,
            "deployment": deployment,
            "meter": meter,
        }
        current = self._current(partition, entity["RowKey"])
        if current is None:
            return ("create", {**entity, "tokens": int64(tokens)})  # fails if another consumer created it first
        entity["tokens"] = int64(as_int(current["tokens"]) + tokens)
        etag = current.metadata["etag"]
        return ("update", entity, {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": _IF_UNCHANGED})

    def _current(self, partition: str, row: str) -> TableEntity | None:
        try:
            with translated("usage totals"):
                return self.table.get_entity(partition, row)
        except NotFound:
            return None

    def _recorded(self, partition: str, event_ids: list[str]) -> set[str]:
        """Which of these events the ledger holds already."""
        found: set[str] = set()
        for group in _groups(event_ids, _FILTER_KEYS):
            rows = {event_row(i): i for i in group}
            names = [f"r{n}" for n in range(len(group))]
            # The SDK finds parameters by splitting on spaces: keep "@name" apart from the parentheses.
            query = "PartitionKey eq @pk and ( " + " or ".join(f"RowKey eq @{n}" for n in names) + " )"
            parameters = {"pk": partition, **dict(zip(names, rows, strict=True))}
            with translated("usage ledger events"):
                for entity in self.table.query_entities(query, parameters=parameters, select=["RowKey"]):
                    found.add(rows[entity["RowKey"]])
        return found


_IF_UNCHANGED = MatchConditions.IfNotModified


def _chunks(events: list[UsageEvent]) -> Iterator[_Chunk]:
    """Runs of events whose event rows plus distinct totals rows fit one transaction."""
    current: list[UsageEvent] = []
    keys: set[TotalKey] = set()
    for e in events:
        key = (hour_text(e.time), e.deployment, e.meter.value)
        new_keys = keys if e.mirrored else keys | {key}
        if current and len(current) + 1 + len(new_keys) > MAX_OPERATIONS:
            yield _Chunk(current)
            current, keys = [], set()
            new_keys = set() if e.mirrored else {key}
        current.append(e)
        keys = new_keys
    if current:
        yield _Chunk(current)


def _groups(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
