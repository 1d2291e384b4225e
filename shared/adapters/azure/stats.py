"""Job outcomes per deployment on Table storage: one entity per job, partitioned by the UTC hour it finished in
(a time range reads a run of partitions) and keyed by the job id, upserted so a redelivery counts once."""

from __future__ import annotations

import json
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


class AzureDeploymentStats:
    ping_timeout_s = PING_TIMEOUT_S

    def __init__(self, table: TableClient) -> None:
        self.table = table
        self._create = CreateOnce(f"table {table.table_name}", table.create_table)

    def ping(self) -> None:
        ping_table(self.table, self.ping_timeout_s)

    def record(self, outcome: JobOutcome) -> None:
        record = to_record(outcome)
        entity: dict[str, Any] = {
            **record,
            "PartitionKey": hour_text(outcome.finished_at),
            "RowKey": table_key(outcome.job_id),
            "error": outcome.error or "",  # a Table property can't be null
            "usage": json.dumps(record["usage"]),
        }
        self._create()
        with translated(f"outcome of job {outcome.job_id}"):
            self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def outcomes(self, start: datetime, end: datetime) -> list[JobOutcome]:
        query = "PartitionKey ge @lo and PartitionKey le @hi"
        self._create()
        with translated("deployment outcomes"):
            rows = list(self.table.query_entities(query, parameters={"lo": hour_text(start), "hi": hour_text(end)}))
        found = [from_record(dict(row)) for row in rows]
        return sorted((o for o in found if start <= o.finished_at < end), key=lambda o: o.finished_at)
