"""The queue message: versioned JSON carrying a job, its payload inline or by blob reference (claim-check)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator


class JobMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    job_id: str
    tenant: str
    deployment: str
    payload: dict[str, Any] | None = None
    payload_ref: str | None = None
    # The W3C trace context of the request that queued it (absent in older messages and with tracing off): the
    # worker continues that trace, on every delivery.
    traceparent: str | None = None

    @model_validator(mode="after")
    def _one_payload(self) -> JobMessage:
        if (self.payload is None) == (self.payload_ref is None):
            raise ValueError("exactly one of payload and payload_ref must be set")
        return self
