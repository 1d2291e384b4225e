"""Scoring-script requests: any JSON in (its `model` names the endpoint), the script's JSON out, billed as one
request on the `requests` meter. The runtime is the user's script (Azure ML's `init()`/`run()` contract)."""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared.domain.config import Deployment, RunnerKind
from shared.domain.errors import InvalidInput
from shared.runtimes.base import Edge, Fetch, TaskOutput, Work, check_unicode, parse_payload
from shared.runtimes.engines.scoring_script import ScoringScript
from shared.schemas.usage import Meter
from shared.settings import Settings

# Deeper JSON than a queue message can carry (pydantic refuses ~200 levels); no scoring input needs this many.
MAX_DEPTH = 64


class ScorePayload(BaseModel):
    """The queued request: the body the script's run() receives, as JSON."""

    model_config = ConfigDict(extra="forbid")
    data: Any


class ScoreResult(BaseModel):
    output: Any


def endpoint(body: Any) -> tuple[str | None, Any]:
    """The endpoint the body names (its `model`) and the body as JSON: what routing needs, read before the
    request is admitted (the rest of the check walks the whole body, after)."""
    if isinstance(body, bytes):  # sent without a JSON content type (what `curl -d` does): JSON all the same
        try:
            body = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise InvalidInput("The request body must be JSON.", loc=("body",)) from exc
    model = body.get("model") if isinstance(body, dict) else None
    if model is not None and not isinstance(model, str):
        raise InvalidInput("model must be a string", loc=("body", "model"), input=model)
    return model, body


def check(body: Any) -> dict[str, Any]:
    """The payload to queue: the JSON body without its `model`."""
    _check_json(body, ("body",))
    check_unicode(body)
    if isinstance(body, dict) and "model" in body:
        body = {k: v for k, v in body.items() if k != "model"}
    payload: dict[str, Any] = ScorePayload(data=body).model_dump()
    return payload


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


class ScoreRuntime(ScoringScript):
    """The deployment's scoring script, in a process of its own (started once, again after a crash)."""


class ScoreKind:
    kind = RunnerKind.SCORE
    cancellable = False
    deterministic_usage = True

    def runtime(self, deployment: Deployment, fetch: Fetch, settings: Settings) -> ScoreRuntime:
        assert deployment.script is not None and deployment.code is not None  # the config requires them
        return ScoreRuntime(
            deployment.name,
            fetch(deployment.code.files, of="code"),  # pinned by sha256, like the model's files
            deployment.script,
            fetch(deployment.model.files),
            run_timeout_s=settings.script_run_timeout_s,
            init_timeout_s=settings.script_init_timeout_s,
        )

    def edge_tool(self, deployment: Deployment, fetch: Fetch) -> None:  # noqa: ARG002 (the protocol's)
        return None

    def check(self, request: Any, deployment: Deployment, edge: Edge) -> dict[str, Any]:  # noqa: ARG002
        """`request` is the JSON body (`endpoint(body)` read its `model` to route it)."""
        return check(request)

    def estimate(self, deployment: Deployment, payload: dict[str, Any]) -> int:  # noqa: ARG002
        return 0  # billed per request, not per token

    def execute(self, work: Work, payload: dict[str, Any], runtime: ScoreRuntime) -> TaskOutput:  # noqa: ARG002
        request: ScorePayload = parse_payload(ScorePayload, payload)
        output = runtime.run(json.dumps(request.data, separators=(",", ":")))  # JSON, or ScriptError
        return TaskOutput(result=ScoreResult(output=output), usage={Meter.REQUESTS: 1})

    def render(self, result: dict[str, Any]) -> Any:
        return ScoreResult.model_validate(result).output


KIND = ScoreKind()
