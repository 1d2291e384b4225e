"""The usage event workers publish and the billing consumer totals."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.config import Meter


class UsageEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=256)
    tenant: str = Field(min_length=1)
    endpoint: str
    deployment: str
    model: str
    meter: Meter
    tokens: int = Field(ge=0)
    time: AwareDatetime
    job_id: str
    mirrored: bool = False

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
    )
