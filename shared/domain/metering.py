"""Metering records: the ledger's hourly totals in the shape of the usage records Azure AI (Cognitive Services)
containers send to their metering service — one record per tenant × deployment × meter × hour, with its types:
`meter.quantity` a JSON number and `requestTime` an integer (Unix seconds). Write records with `to_json`: it
writes the quantity as the exact decimal it is (json would refuse a Decimal, and a float rounds past 15 digits).

Our fields → the record:
  id                uuid5 of (tenant, deployment, meter, hour): a re-export yields the same ids, so a consumer
                    that upserts by id stays correct (and picks up an hour's late events on a re-export)
  meter.name        "inferq.<deployment>.<meter>", e.g. "inferq.all-MiniLM-L6-v2.input_tokens" (one price each)
  meter.quantity    tokens / 1000 as an exact decimal number (1.234 is 1,234 tokens, all digits kept); requests
                    / 1000 for the requests meter of scoring-script deployments
  meter.unit        what the quantity counts: "1K tokens" or "1K requests"
  requestTime       the hour's start in Unix seconds, an integer (1714568400 is 2024-05-01T13:00:00Z)
  apiType           the deployment's kind ("embeddings", "chat-completion", "score"; "unknown" once it left the config)
  containerType     the deployment name
  containerVersion  the inferq version
  containerId       the tenant (the billed party; one "container" per tenant)
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shared.domain import billing
from shared.domain.config import AppConfig
from shared.domain.errors import NotFound
from shared.domain.ports import UsageTotal

CONTAINER_VERSION = "0.1.0"
METER_PREFIX = "inferq"
# Fixed forever: changing it changes every id and breaks idempotency downstream.
_NAMESPACE = uuid.UUID("4f7d5f0e-3c1a-5b6e-9a53-6e1f0c2b8d17")


def record_id(tenant: str, deployment: str, meter: str, hour: datetime) -> str:
    hour_text = billing.hour_of(hour).strftime("%Y-%m-%dT%H:00:00Z")
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join((tenant, deployment, meter, hour_text))))


def records(totals: Iterable[UsageTotal], config: AppConfig) -> list[dict[str, Any]]:
    return [record(t, config) for t in totals]


def record(total: UsageTotal, config: AppConfig) -> dict[str, Any]:
    try:
        api_type = config.deployment(total.deployment).kind.value
    except NotFound:
        api_type = "unknown"
    hour = billing.hour_of(total.period_start).astimezone(UTC)
    return {
        "id": record_id(total.tenant, total.deployment, total.meter, hour),
        "meter": {
            "name": f"{METER_PREFIX}.{total.deployment}.{total.meter}",
            "quantity": billing.quantity(total.tokens),
            "unit": billing.unit(total.meter),
        },
        "requestTime": int(hour.timestamp()),
        "apiType": api_type,
        "containerType": total.deployment,
        "containerVersion": CONTAINER_VERSION,
        "containerId": total.tenant,
    }


def to_json(value: Any) -> str:
    """Compact JSON of records (or of a body holding them), each Decimal as the exact JSON number it is: json has
    no hook for a number's text, so each is written as a placeholder string no other text can hold (a fresh
    random marker), then replaced by its digits."""
    marker = uuid.uuid4().hex
    numbers: list[str] = []

    def number(o: object) -> str:
        if not isinstance(o, Decimal):
            raise TypeError(f"{type(o).__name__} is not JSON")
        numbers.append(billing.decimal_text(o))
        return f"{marker}{len(numbers) - 1}"

    text = json.dumps(value, default=number, separators=(",", ":"), ensure_ascii=False)
    return re.sub(f'"{marker}(\\d+)"', lambda m: numbers[int(m.group(1))], text)


def jsonl(records: Iterable[dict[str, Any]]) -> str:
    """The export's format (`inferq metering export`, scripts/export_metering.py): one compact record a line, with
    `to_json`'s exact numbers."""
    return "".join(to_json(record) + "\n" for record in records)
