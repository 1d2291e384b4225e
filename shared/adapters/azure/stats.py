"""Job outcomes per deployment on Table storage: one entity per job, partitioned by the UTC hour it finished in
(a time range reads a run of partitions) and keyed by the job id, upserted so a redelivery counts once."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.data.tables import UpdateMode

from shared.adapters.azure.connection import CreateOnce
from shared.adapters.azure.errors import translated
from shared.adapters.azure.ledger import hour_text
from shared.adapters.azure.probe import PING_TIMEOUT_S
from shared.adapters.azure.tables import ping_table, table_key
from shared.domain.deployment_stats import from_record, to_record
from shared.domain.ports import JobOutcome

if TYPE_CHECKING:
    from azure.data.tables import TableClient

TRANSACTION_MAX = 100  # operations an entity-group transaction may hold


class AzureDeploymentStats:
    ping_timeout_s = PING_TIMEOUT_S

    def __init__(self, table: TableClient) -> None:
        self.table = table
        self._create = CreateOnce(f"table {table.table_name}", table.create_table)

    def ping(self) -> None:
        ping_table(self.table, self.ping_timeout_s)

    def record(self, outcomes: Sequence[JobOutcome]) -> None:
        """One entity-group transaction per hour partition and up to 100 outcomes (one billed transaction)."""
        partitions: dict[str, dict[str, dict[str, Any]]] = {}
        for outcome in outcomes:  # a job recorded twice in one call: its last outcome (a batch can't repeat a row)
            entity = _entity(outcome)
            partitions.setdefault(entity["PartitionKey"], {})[entity["RowKey"]] = entity
        self._create()
        for entities in partitions.values():
            rows = list(entities.values())
            for start in range(0, len(rows), TRANSACTION_MAX):
                operations = [
                    ("upsert", e, {"mode": UpdateMode.REPLACE}) for e in rows[start : start + TRANSACTION_MAX]
                ]
                with translated(f"outcomes of {len(operations)} jobs"):
                    self.table.submit_transaction(operations)

    def outcomes(self, start: datetime, end: datetime) -> list[JobOutcome]:
        query = "PartitionKey ge @lo and PartitionKey le @hi"
        self._create()
        with translated("deployment outcomes"):
            rows = list(self.table.query_entities(query, parameters={"lo": hour_text(start), "hi": hour_text(end)}))
        found = [from_record(dict(row)) for row in rows]
        return sorted((o for o in found if start <= o.finished_at < end), key=lambda o: o.finished_at)


def _entity(outcome: JobOutcome) -> dict[str, Any]:
    record = to_record(outcome)
    return {
        **record,
        "PartitionKey": hour_text(outcome.finished_at),
        "RowKey": table_key(outcome.job_id),
        "error": outcome.error or "",  # a Table property can't be null
        "usage": json.dumps(record["usage"]),
    }
