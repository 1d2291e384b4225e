"""Scoring-script requests: any JSON in (its `model` names the endpoint), the script's JSON out, billed as one
request on the `requests` meter."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from shared.config import Meter
from shared.errors import InvalidInput, PermanentJobError, ScriptError
from shared.tasks import TaskOutput

Run = Callable[[str], Any]


def check(body: Any) -> tuple[str | None, dict[str, Any]]:
    """The endpoint the body names (its `model`, taken out) and the payload to queue."""
    model = None
    if isinstance(body, dict) and "model" in body:
        body = dict(body)
        model = body.pop("model")
        if not isinstance(model, str):
            raise InvalidInput("model must be a string", loc=("body", "model"), input=model)
    return model, {"data": body}


def execute(payload: dict[str, Any], run: Run) -> TaskOutput:
    if "data" not in payload:
        raise PermanentJobError("a scoring payload carries its request body in 'data'")
    output = run(json.dumps(payload["data"], separators=(",", ":")))
    try:
        json.dumps(output, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ScriptError(f"run() returned a value that is not JSON: {exc}") from exc
    return TaskOutput(result={"output": output}, usage={Meter.REQUESTS: 1})
