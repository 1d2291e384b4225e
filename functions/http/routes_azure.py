"""Azure OpenAI's routes (what `openai.AzureOpenAI` calls): the path names the endpoint or a deployment behind one,
`api-version` is accepted (one API here, whatever the version), the key comes as `api-key` as on every route."""

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from functions.http.body import StrictJsonRoute
from functions.http.deps import Auth, DeploymentHeader, Extra, Gate
from functions.http.headers import note_route
from functions.http.jobs import submit_and_respond
from functions.http.routes_chat import complete
from shared.runtimes import chat, embeddings
from shared.schemas.chat import ChatCompletionsRequest, CompletionsRequest
from shared.schemas.embeddings import EmbeddingsRequest

router = APIRouter(prefix="/openai/deployments/{name}", route_class=StrictJsonRoute)

ApiVersion = Annotated[str | None, Query(alias="api-version", description="accepted, any value")]


@router.post("/embeddings")
async def embed(
    name: str,
    body: EmbeddingsRequest,
    request: Request,
    gw: Gate,
    who: Auth,
    extra: Extra,
    header: DeploymentHeader = None,
    _version: ApiVersion = None,
) -> Response:
    route = gw.route_named(name, header, embeddings.KIND)
    note_route(request, route)
    return await submit_and_respond(gw, who, route, body, extra, request)


@router.post("/chat/completions")
async def chat_completions(
    name: str,
    body: ChatCompletionsRequest,
    request: Request,
    gw: Gate,
    who: Auth,
    extra: Extra,
    header: DeploymentHeader = None,
    _version: ApiVersion = None,
) -> Response:
    return await complete(gw.route_named(name, header, chat.KIND), body, request, gw, who, extra)


@router.post("/completions")
async def completions(
    name: str,
    body: CompletionsRequest,
    request: Request,
    gw: Gate,
    who: Auth,
    extra: Extra,
    header: DeploymentHeader = None,
    _version: ApiVersion = None,
) -> Response:
    return await complete(gw.route_named(name, header, chat.KIND), body, request, gw, who, extra)
