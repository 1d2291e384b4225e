"""Scoring-script deployments (Azure ML's init()/run() contract): any JSON in, the script's JSON out."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response

from functions.http.deps import Auth, DeploymentHeader, Service
from functions.http.headers import note_route
from functions.http.jobs import submit_and_respond
from shared.domain.config import RunnerKind
from shared.runtimes import score

router = APIRouter()

Model = Annotated[str | None, Query(description="the endpoint, when the body has no `model`")]


@router.post("/score")
async def score_request(
    request: Request,
    svc: Service,
    who: Auth,
    body: Annotated[Any, Body()],
    header: DeploymentHeader = None,
    model: Model = None,
) -> Response:
    named, payload = score.check(body)
    route = svc.route(named or model, header, RunnerKind.SCORE)
    note_route(request, route)
    return await submit_and_respond(svc, who, route, payload, request, render=lambda result: result["output"])
