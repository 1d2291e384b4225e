"""Tasks: what a kind of request means — validated at the edge, executed by the worker on a runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from shared.config import Meter
from shared.errors import InvalidInput
from shared.jobs import JobError, JobStatus

# The `extra-parameters` header: unknown body parameters are an error, dropped, or passed to the runner.
ExtraMode = Literal["error", "drop", "pass-through"]


def extras_allowed(request: BaseModel, extra: ExtraMode) -> dict[str, Any]:
    """The request's unknown parameters, or InvalidInput naming the first when the header says `error`."""
    extras = dict(request.model_extra or {})
    if extras and extra == "error":
        name = next(iter(extras))
        raise InvalidInput(
            f"Extra parameter '{name}' is not allowed (send 'extra-parameters: drop' to ignore it).",
            loc=("body", name),
            input=extras[name],
        )
    return extras


@dataclass(frozen=True)
class TaskOutput:
    result: dict[str, Any] | None
    usage: dict[Meter, int] = field(default_factory=dict)
    # A task that did billable work can still end otherwise: a generation cut short by a failure (FAILED, with
    # the error) or by its client (CANCELLED). Its usage is billed all the same.
    status: JobStatus = JobStatus.SUCCEEDED
    error: JobError | None = None
