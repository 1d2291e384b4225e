"""The HTTP API (Azure AI Model Inference shapes): a FastAPI app, served by `functions/azure/http.py` on Azure
and by uvicorn on the local host. Routes translate: parse, call a handler, render."""

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from functions.http import (
    errors,
    routes_azure,
    routes_chat,
    routes_dashboard,
    routes_docs,
    routes_images,
    routes_score,
    routes_usage,
)
from functions.http.body import StrictJsonRoute
from functions.http.body_limit import BodyLimitMiddleware
from functions.http.deps import Auth, DeploymentHeader, Extra, Gate
from functions.http.headers import ResponseHeadersMiddleware, note_route
from functions.http.jobs import job_response, submit_and_respond
from shared.application.gateway import Gateway
from shared.bootstrap import get_app
from shared.domain.config import Deployment, Endpoint
from shared.domain.errors import InferqError
from shared.runtimes import embeddings
from shared.schemas.embeddings import EmbeddingsRequest

router = APIRouter(route_class=StrictJsonRoute)


@router.get("/health")
def health() -> dict[str, str]:
    """Liveness: the process answers (no key needed)."""
    return {"status": "ok"}


@router.get("/health/ready")
async def ready() -> Response:
    """Readiness: every backend this instance uses answers; 503 naming the ones that don't (no key needed)."""
    state = await run_in_threadpool(get_app().readiness.check)
    if state.ready:
        return JSONResponse({"status": "ready", "components": state.components})
    failing = ", ".join(f"{name} ({state.components[name]})" for name in state.failing)
    body = errors.error_body("NotReady", f"Not ready: {failing}.")
    return errors.error_response({**body, "components": state.components}, 503, {"Retry-After": "5"})


@router.get("/info")
def info(gw: Gate, _: Auth, model: str | None = None, header: DeploymentHeader = None) -> dict[str, str]:
    d = gw.describe(model, header)
    return {"model_name": d.model_name, "model_type": d.kind.model_type, "model_provider_name": d.model_provider}


@router.get("/models")
def models(gw: Gate, _: Auth) -> dict[str, Any]:
    """The endpoints: what clients pass as `model`."""
    return {"object": "list", "data": [_model(gw, endpoint, d) for endpoint, d in gw.endpoints()]}


@router.get("/models/{model_id}")
def get_model(model_id: str, gw: Gate, _: Auth) -> dict[str, Any]:
    """One endpoint, as `/models` lists it (OpenAI's `models.retrieve`); 404 naming the known ones."""
    endpoint = gw.router.endpoint(model_id)
    return _model(gw, endpoint, gw.describe(endpoint.name, None))


def _model(gw: Gateway, endpoint: Endpoint, d: Deployment) -> dict[str, Any]:
    return {
        "id": endpoint.name,
        "object": "model",
        "created": 0,
        "owned_by": d.model_provider,
        "model_type": d.kind.model_type,
        "description": endpoint.description or d.description,
        **_availability(gw.registry.unavailable(d)),
    }


def _availability(reason: str | None) -> dict[str, Any]:
    """`available`, and why not (a model still to be built: `make chat-model`)."""
    return {"available": True} if reason is None else {"available": False, "unavailable_reason": reason}


@router.post("/embeddings")
async def create_embeddings(
    body: EmbeddingsRequest, request: Request, gw: Gate, who: Auth, extra: Extra, header: DeploymentHeader = None
) -> Response:
    route = gw.route(body.model, header, embeddings.KIND)
    note_route(request, route)
    return await submit_and_respond(gw, who, route, body, extra, request)


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, gw: Gate, who: Auth) -> Response:
    return job_response(await run_in_threadpool(gw.get_job, who, job_id), 200)


@router.delete("/jobs/{job_id}")
async def cancel_job(job_id: str, gw: Gate, who: Auth) -> Response:
    return job_response(await run_in_threadpool(gw.cancel, who, job_id), 200)


def create_app() -> FastAPI:
    api = FastAPI(
        title="inferq",
        summary="ONNX inference behind the Azure AI Model Inference API",
        openapi_url=None,  # served by routes_docs, behind a key or not at all
        docs_url=None,
        redoc_url=None,
    )
    api.add_middleware(ResponseHeadersMiddleware)
    api.add_middleware(BodyLimitMiddleware, max_bytes=lambda: get_app().settings.max_body_bytes)
    api.add_exception_handler(InferqError, errors.on_domain_error)
    api.add_exception_handler(RequestValidationError, errors.on_validation_error)
    api.add_exception_handler(HTTPException, errors.on_http_error)
    api.add_exception_handler(Exception, errors.on_unexpected)
    for r in (
        router,
        routes_chat.router,
        routes_azure.router,
        routes_score.router,
        routes_images.router,
        routes_usage.router,
    ):
        api.include_router(r)
        # An OpenAI `base_url` ending in /v1 (what most client code has); the schema lists each route once.
        api.include_router(r, prefix="/v1", include_in_schema=False)
    api.include_router(routes_docs.router)
    api.include_router(routes_docs.router, prefix="/v1")
    api.include_router(routes_dashboard.api)
    api.include_router(routes_dashboard.api, prefix="/v1", include_in_schema=False)
    api.include_router(routes_dashboard.page)  # after the api: /dashboard/summary is not one of the page's files
    api.include_router(routes_dashboard.page, prefix="/v1")  # its URLs are relative: it works there too
    return api


app = create_app()
