"""Scoring-script deployments (Azure ML's init()/run() contract): the body as sent in, the script's JSON out.

The body is read as bytes, not through FastAPI's JSON parsing (the size limit is the middleware's): the script gets
it byte for byte. A JSON body (a JSON content type, none, or a form's, which `curl -d` sends) is parsed strictly all
the same, to route it by its `model` and refuse what no job can carry; another content type is queued as it is,
for scripts that take raw input (`@rawhttp`).
"""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from functions.http.body import StrictJsonRoute, read_json
from functions.http.deps import Auth, DeploymentHeader, Gate
from functions.http.headers import note_route
from functions.http.jobs import submit_and_respond
from shared.application.gateway import Gateway
from shared.domain.errors import NotFound
from shared.runtimes import score

router = APIRouter(route_class=StrictJsonRoute)

Model = Annotated[str | None, Query(description="the endpoint, when the body has no `model`")]
# Read as JSON: what JSON clients send, and what `curl -d` does (a form's type, JSON all the same).
JSON_TYPES = ("", "application/json", "application/x-www-form-urlencoded", "text/json")
ANY_BODY = {"requestBody": {"content": {"*/*": {"schema": {}}}, "required": True}}


@router.post("/score", openapi_extra=ANY_BODY)
async def score_request(
    request: Request, gw: Gate, who: Auth, header: DeploymentHeader = None, model: Model = None
) -> Response:
    return await _score(request, gw, who, header, model)


@router.post("/score/{endpoint}", openapi_extra=ANY_BODY)
async def score_endpoint(
    request: Request, gw: Gate, who: Auth, endpoint: Annotated[str, Path()], header: DeploymentHeader = None
) -> Response:
    return await _score(request, gw, who, header, None, endpoint)


async def _score(
    request: Request, gw: Gateway, who: Auth, header: str | None, model: str | None, path: str | None = None
) -> Response:
    """The endpoint: the path's, else the body's `model`, else the query's, else the only scoring one."""
    raw = await request.body()
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() in JSON_TYPES or content_type.lower().endswith("+json"):
        named, value = score.endpoint(read_json(raw))  # only its model: the walk over the body comes after admission
        body = score.ScoreRequest(raw, content_type or score.JSON_TYPE, value)
    else:
        named, body = None, score.ScoreRequest(raw, content_type, is_json=False)
    route = gw.route(path or named or model or _only_scoring_endpoint(gw), header, score.KIND)
    note_route(request, route)
    return await submit_and_respond(gw, who, route, body, "error", request)


def _only_scoring_endpoint(gw: Gateway) -> str:
    """Where a request that names no endpoint goes: the one endpoint of scoring deployments."""
    names = [e.name for e, d in gw.endpoints() if d.kind is score.KIND.kind]
    if len(names) == 1:
        return names[0]
    if not names:
        raise NotFound("No scoring deployment is configured.")
    raise NotFound(f"Several endpoints serve scoring scripts: name one as `model` ({', '.join(names)}).")
