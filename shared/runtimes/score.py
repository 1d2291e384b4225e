"""Scoring-script requests: any JSON in (its `model` names the endpoint), the script's JSON out, billed as one
request on the `requests` meter."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from shared.domain.config import Meter
from shared.domain.errors import InvalidInput, PermanentJobError, ScriptError
from shared.runtimes.base import TaskOutput, check_unicode

Run = Callable[[str], Any]
# Deeper JSON than a queue message can carry (pydantic refuses ~200 levels); no scoring input needs this many.
MAX_DEPTH = 64


def check(body: Any) -> tuple[str | None, dict[str, Any]]:
    """The endpoint the body names (its `model`, taken out) and the payload to queue."""
    if isinstance(body, bytes):  # sent without a JSON content type (what `curl -d` does): JSON all the same
        try:
            body = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise InvalidInput("The request body must be JSON.", loc=("body",)) from exc
    _check_json(body, ("body",))
    check_unicode(body)
    model = None
    if isinstance(body, dict) and "model" in body:
        body = dict(body)
        model = body.pop("model")
        if not isinstance(model, str):
            raise InvalidInput("model must be a string", loc=("body", "model"), input=model)
    return model, {"data": body}


def _check_json(value: Any, loc: tuple[str | int, ...]) -> None:
    """What a job can carry to the script unchanged: no NaN or Infinity (not JSON), at most MAX_DEPTH levels."""
    if len(loc) > MAX_DEPTH:
        raise InvalidInput(f"The body is nested deeper than {MAX_DEPTH} levels.", loc=loc[:4])
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput("NaN and Infinity are not JSON numbers.", loc=loc, input=str(value))
    if isinstance(value, dict):
        for key, item in value.items():
            _check_json(item, (*loc, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, (*loc, index))


def execute(payload: dict[str, Any], run: Run) -> TaskOutput:
    if "data" not in payload:
        raise PermanentJobError("a scoring payload carries its request body in 'data'")
    output = run(json.dumps(payload["data"], separators=(",", ":")))
    try:
        json.dumps(output, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ScriptError(f"run() returned a value that is not JSON: {exc}") from exc
    return TaskOutput(result={"output": output}, usage={Meter.REQUESTS: 1})
