"""Tasks: what a kind of request means — validated at the edge, executed by the worker on a runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.config import Meter
from shared.jobs import JobError, JobStatus


@dataclass(frozen=True)
class TaskOutput:
    result: dict[str, Any] | None
    usage: dict[Meter, int] = field(default_factory=dict)
    # A task that did billable work can still end otherwise: a generation cut short by a failure (FAILED, with
    # the error) or by its client (CANCELLED). Its usage is billed all the same.
    status: JobStatus = JobStatus.SUCCEEDED
    error: JobError | None = None
