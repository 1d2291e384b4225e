"""Chat and text completion routes: check at the edge, queue the job, then wait for it or relay its stream."""

import logging

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from functions.http.deps import Auth, DeploymentHeader, Extra, Service
from functions.http.headers import note_route
from functions.http.jobs import submit_and_respond
from functions.http.sse import stream_job
from shared.application.gateway import InferenceService
from shared.domain.config import Deployment, RunnerKind
from shared.domain.errors import ConfigError
from shared.runtimes import chat
from shared.runtimes.chat import PromptTokens
from shared.schemas.chat import ChatCompletionsRequest, CompletionsRequest

log = logging.getLogger(__name__)
router = APIRouter()


@router.post("/chat/completions")
async def chat_completions(
    body: ChatCompletionsRequest,
    request: Request,
    svc: Service,
    who: Auth,
    extra: Extra,
    header: DeploymentHeader = None,
) -> Response:
    return await _complete(body, request, svc, who, extra, header)


@router.post("/completions")
async def completions(
    body: CompletionsRequest, request: Request, svc: Service, who: Auth, extra: Extra, header: DeploymentHeader = None
) -> Response:
    return await _complete(body, request, svc, who, extra, header)


async def _complete(
    body: chat.Request, request: Request, svc: Service, who: Auth, extra: Extra, header: str | None
) -> Response:
    route = svc.route(body.model, header, RunnerKind.CHAT)
    note_route(request, route)
    counter = await run_in_threadpool(_prompt_counter, svc, route.deployment)
    payload = await run_in_threadpool(chat.check, body, route.deployment, extra, counter)
    if body.stream:
        return await stream_job(svc, who, route, payload, request, body)
    return await submit_and_respond(svc, who, route, payload, request)


def _prompt_counter(svc: InferenceService, deployment: Deployment) -> PromptTokens | None:
    try:
        return svc.runners.prompt_counter(deployment)
    except ConfigError as exc:  # the worker's own count still decides
        log.warning("no prompt token count at the edge for %s: %s", deployment.name, exc)
        return None
