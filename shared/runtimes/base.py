"""Tasks: what a kind of request means — validated at the edge, executed by the worker on a runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from shared.domain.config import Meter
from shared.domain.errors import InvalidInput
from shared.domain.jobs import JobError, JobStatus

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


def check_unicode(value: Any, loc: tuple[str | int, ...] = ("body",)) -> None:
    """InvalidInput naming the first string (or key) that UTF-8 can't carry: JSON escapes can spell lone
    surrogates ("\\ud800"), which no queue message, tokenizer or response could hold."""
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInput("The text is not valid Unicode (a lone surrogate).", loc=loc) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_unicode(key, loc)
            check_unicode(item, (*loc, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_unicode(item, (*loc, index))


@dataclass(frozen=True)
class TaskOutput:
    result: dict[str, Any] | None
    usage: dict[Meter, int] = field(default_factory=dict)
    # A task that did billable work can still end otherwise: a generation cut short by a failure (FAILED, with
    # the error) or by its client (CANCELLED). Its usage is billed all the same.
    status: JobStatus = JobStatus.SUCCEEDED
    error: JobError | None = None
