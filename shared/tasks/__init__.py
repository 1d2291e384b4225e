"""Tasks: what a kind of request means — validated at the edge, executed by the worker on a runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.config import Meter


@dataclass(frozen=True)
class TaskOutput:
    result: dict[str, Any]
    usage: dict[Meter, int] = field(default_factory=dict)
