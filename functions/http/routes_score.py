"""Scoring-script deployments (Azure ML's init()/run() contract): any JSON in, the script's JSON out."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response

from functions.http.body import StrictJsonRoute, read_json
from functions.http.deps import Auth, DeploymentHeader, Gate
from functions.http.headers import note_route
from functions.http.jobs import submit_and_respond
from shared.runtimes import score

router = APIRouter(route_class=StrictJsonRoute)

Model = Annotated[str | None, Query(description="the endpoint, when the body has no `model`")]


@router.post("/score")
async def score_request(
    request: Request,
    gw: Gate,
    who: Auth,
    body: Annotated[Any, Body()],
    header: DeploymentHeader = None,
    model: Model = None,
) -> Response:
    if isinstance(body, bytes):  # sent without a JSON content type (what `curl -d` does): JSON all the same
        body = read_json(body)
    named, parsed = score.endpoint(body)  # only its model: the walk over the body comes after admission
    route = gw.route(named or model, header, score.KIND)
    note_route(request, route)
    return await submit_and_respond(gw, who, route, parsed, "error", request)
