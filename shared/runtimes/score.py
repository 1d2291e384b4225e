"""Scoring-script requests: the body as sent in (a JSON body's `model` names the endpoint), the script's JSON out,
billed as one request on the `requests` meter. The runtime is the user's script (Azure ML's `init()`/`run()`
contract): `run()` gets the body's text byte for byte, or, for a script that declares raw input (`@rawhttp`), a
request object with the content type and the bytes.

The queued payload (version 2) carries the body base64-encoded, so no JSON round trip changes a byte:
  {"v": 2, "body": "<base64>", "content_type": "<as sent>", "json": <whether the body is JSON>}
Version 1, `{"data": <JSON value>}` (what older producers queue), is still run: the value as compact JSON text."""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from shared.domain.config import Deployment, RunnerKind
from shared.domain.errors import InvalidInput
from shared.runtimes.base import Edge, Fetch, TaskOutput, Work, check_unicode, parse_payload
from shared.runtimes.engines.scoring_script import ScoringScript
from shared.schemas.usage import Meter
from shared.settings import Settings

# Deeper JSON than a queue message can carry (pydantic refuses ~200 levels); no scoring input needs this many.
MAX_DEPTH = 64


PAYLOAD_VERSION = 2
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class ScoreRequest:
    """A request as the route read it: the bytes, their content type, and their JSON value when they are JSON
    (None when they are not: only a script that declares raw input takes those)."""

    body: bytes
    content_type: str
    value: Any = None
    is_json: bool = True


class ScorePayload(BaseModel):
    """Version 1 of the queued request: the body as a JSON value (what producers written before version 2 queue)."""

    model_config = ConfigDict(extra="forbid")
    data: Any


class RawScorePayload(BaseModel):
    """Version 2: the body's bytes as sent (base64) and their content type."""

    model_config = ConfigDict(extra="forbid")
    v: Literal[2]
    body: str
    content_type: str
    json_body: bool = True


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


def check(request: Any) -> dict[str, Any]:
    """The payload to queue: a ScoreRequest's bytes as sent (a JSON body checked first: what no job can carry
    to a script is refused here); a bare JSON value (what producers pass) as version 1, without its `model`."""
    if isinstance(request, ScoreRequest):
        if request.is_json:
            _check_json(request.value, ("body",))
            check_unicode(request.value)
        return RawScorePayload(
            v=PAYLOAD_VERSION,
            body=base64.b64encode(request.body).decode("ascii"),
            content_type=request.content_type,
            json_body=request.is_json,
        ).model_dump()
    _check_json(request, ("body",))
    check_unicode(request)
    if isinstance(request, dict) and "model" in request:
        request = {k: v for k, v in request.items() if k != "model"}
    payload: dict[str, Any] = ScorePayload(data=request).model_dump()
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
    light_check = False  # its body is any JSON, of any size

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
        """`request` is the route's ScoreRequest, or a producer's JSON value."""
        return check(request)

    def estimate(self, deployment: Deployment, payload: dict[str, Any]) -> int:  # noqa: ARG002
        return 0  # billed per request, not per token

    def execute(self, work: Work, payload: dict[str, Any], runtime: ScoreRuntime) -> TaskOutput:  # noqa: ARG002
        if "v" in payload:
            raw: RawScorePayload = parse_payload(RawScorePayload, payload)
            try:
                body = base64.b64decode(raw.body, validate=True)
            except ValueError as exc:
                raise InvalidInput("invalid payload: body is not base64", loc=("body", "body")) from exc
            output = runtime.run(body, raw.content_type, is_json=raw.json_body)  # JSON, or ScriptError
        else:
            request: ScorePayload = parse_payload(ScorePayload, payload)
            output = runtime.run(json.dumps(request.data, separators=(",", ":")))
        return TaskOutput(result=ScoreResult(output=output), usage={Meter.REQUESTS: 1})

    def render(self, result: dict[str, Any]) -> Any:
        return ScoreResult.model_validate(result).output


KIND = ScoreKind()
