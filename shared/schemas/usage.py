"""The usage event workers publish and the billing consumer totals."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# Far above any real request; a bigger count is a bad event (dead-lettered), not a 64-bit overflow in the ledger.
MAX_EVENT_TOKENS = 10**12


class Meter(StrEnum):
    INPUT_TOKENS = "input_tokens"
    OUTPUT_TOKENS = "output_tokens"
    REQUESTS = "requests"  # scoring-script deployments: one per job, priced per 1,000 requests

    @property
    def counts_tokens(self) -> bool:
        return self is not Meter.REQUESTS


class UsageEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Bounded: an event any ledger can store (a Table property holds 64 KiB, a transaction 4 MiB); a longer field
    # is a bad event, dead-lettered with its reason, not a batch the ledger refuses whole.
    id: str = Field(min_length=1, max_length=256)
    tenant: str = Field(min_length=1, max_length=256)
    endpoint: str = Field(max_length=256)
    deployment: str = Field(max_length=256)
    model: str = Field(max_length=1024)
    meter: Meter
    # exact: not "12", 12.0 or true. The meter's count: tokens, or requests (1) for the `requests` meter.
    tokens: int = Field(ge=0, le=MAX_EVENT_TOKENS, strict=True)
    time: AwareDatetime
    job_id: str = Field(max_length=256)
    mirrored: bool = Field(default=False, strict=True)
    # The id of the API key (or `entra:<object id>` of the token) that sent the job, never the key itself; ""
    # on events from before key ids, which ingest as they did.
    key_id: str = Field(default="", max_length=256)

    @staticmethod
    def event_id(job_id: str, meter: Meter) -> str:
        # Derived, never random: a retry of the same job produces the same id and can't bill twice.
        return f"{job_id}:{meter.value}"


def usage_event(
    *,
    job_id: str,
    tenant: str,
    endpoint: str,
    deployment: str,
    model: str,
    meter: Meter,
    tokens: int,
    time: datetime,
    mirrored: bool = False,
    key_id: str = "",
) -> UsageEvent:
    return UsageEvent(
        id=UsageEvent.event_id(job_id, meter),
        tenant=tenant,
        endpoint=endpoint,
        deployment=deployment,
        model=model,
        meter=meter,
        tokens=tokens,
        time=time,
        job_id=job_id,
        mirrored=mirrored,
        key_id=key_id,
    )
