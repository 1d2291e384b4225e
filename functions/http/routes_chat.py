"""Chat and text completion routes: admit, check at the edge, queue the job, then wait for it or relay its stream."""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from functions.http.body import StrictJsonRoute
from functions.http.deps import Auth, DeploymentHeader, Extra, Gate
from functions.http.headers import note_route
from functions.http.jobs import submit_and_respond
from functions.http.sse import stream_job
from shared.domain.routing import Route
from shared.runtimes import chat
from shared.schemas.chat import ChatCompletionsRequest, CompletionsRequest

router = APIRouter(route_class=StrictJsonRoute)


@router.post("/chat/completions")
async def chat_completions(
    body: ChatCompletionsRequest, request: Request, gw: Gate, who: Auth, extra: Extra, header: DeploymentHeader = None
) -> Response:
    return await complete(gw.route(body.model, header, chat.KIND), body, request, gw, who, extra)


@router.post("/completions")
async def completions(
    body: CompletionsRequest, request: Request, gw: Gate, who: Auth, extra: Extra, header: DeploymentHeader = None
) -> Response:
    return await complete(gw.route(body.model, header, chat.KIND), body, request, gw, who, extra)


async def complete(route: Route, body: chat.Request, request: Request, gw: Gate, who: Auth, extra: Extra) -> Response:
    note_route(request, route)
    if body.stream:
        return await stream_job(gw, who, route, body, extra, request)
    return await submit_and_respond(gw, who, route, body, extra, request)
