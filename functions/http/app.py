"""The HTTP API (Azure AI Model Inference shapes): a FastAPI app, served by `func.AsgiFunctionApp` on Azure and
by uvicorn on the local host. Routes translate: parse, call the service, render."""

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from functions.http import errors as http_errors
from functions.http import routes_chat, routes_score, routes_usage
from functions.http.body_limit import BodyLimitMiddleware
from functions.http.deps import Auth, DeploymentHeader, Extra, Service
from functions.http.headers import ResponseHeadersMiddleware, note_route
from functions.http.jobs import job_response, submit_and_respond
from shared.bootstrap import get_service
from shared.domain.config import RunnerKind
from shared.domain.errors import InferqError
from shared.runtimes import embeddings
from shared.schemas.embeddings import EmbeddingsRequest

router = APIRouter()


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/info")
def info(svc: Service, _: Auth, model: str | None = None, header: DeploymentHeader = None) -> dict[str, str]:
    d = svc.describe(model, header)
    return {"model_name": d.model_name, "model_type": d.kind.value, "model_provider_name": d.model_provider}


@router.get("/models")
def models(svc: Service, _: Auth) -> dict[str, Any]:
    """The endpoints: what clients pass as `model`."""
    data = []
    for endpoint in svc.router.endpoints:
        d = svc.describe(endpoint.name, None)
        data.append(
            {
                "id": endpoint.name,
                "object": "model",
                "created": 0,
                "owned_by": d.model_provider,
                "model_type": d.kind.value,
                "description": endpoint.description or d.description,
            }
        )
    return {"object": "list", "data": data}


@router.post("/embeddings")
async def create_embeddings(
    body: EmbeddingsRequest, request: Request, svc: Service, who: Auth, extra: Extra, header: DeploymentHeader = None
) -> Response:
    route = svc.route(body.model, header, RunnerKind.EMBEDDINGS)
    note_route(request, route)
    payload = embeddings.check(body, route.deployment, svc.limits, extra)
    return await submit_and_respond(svc, who, route, payload, request)


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, svc: Service, who: Auth) -> Response:
    return job_response(await run_in_threadpool(svc.get_job, who, job_id), 200)


@router.delete("/jobs/{job_id}")
async def cancel_job(job_id: str, svc: Service, who: Auth) -> Response:
    return job_response(await run_in_threadpool(svc.cancel, who, job_id), 200)


def create_app() -> FastAPI:
    api = FastAPI(title="inferq", summary="ONNX inference behind the Azure AI Model Inference API")
    api.add_middleware(ResponseHeadersMiddleware)
    api.add_middleware(BodyLimitMiddleware, max_bytes=lambda: get_service().settings.max_body_bytes)
    api.add_exception_handler(InferqError, http_errors.on_domain_error)
    api.add_exception_handler(RequestValidationError, http_errors.on_validation_error)
    api.add_exception_handler(HTTPException, http_errors.on_http_error)
    api.add_exception_handler(Exception, http_errors.on_unexpected)
    for r in (router, routes_chat.router, routes_score.router, routes_usage.router):
        api.include_router(r)
    return api


app = create_app()
