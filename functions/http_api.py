"""The HTTP API (Azure AI Model Inference shapes): a FastAPI app, served by `func.AsgiFunctionApp` on Azure and
by uvicorn on the local host. Routes translate: parse, call the service, render."""


import asyncio
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal, cast

from fastapi import Depends, FastAPI, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from functions import http_errors
from functions.body_limit import BodyLimitMiddleware
from shared.auth import Caller
from shared.bootstrap import get_service
from shared.config import Deployment, RunnerKind
from shared.errors import InferqError, InvalidInput
from shared.jobs import Job, JobStatus
from shared.schemas.embeddings import EmbeddingsRequest
from shared.service import InferenceService
from shared.tasks import embeddings

ExtraMode = Literal["error", "drop", "pass-through"]


def create_app(service: Callable[[], InferenceService] = get_service) -> FastAPI:
    api = FastAPI(title="inferq", summary="ONNX inference behind the Azure AI Model Inference API")
    api.add_middleware(BodyLimitMiddleware, max_bytes=lambda: service().settings.max_body_bytes)
    api.add_exception_handler(InferqError, http_errors.on_domain_error)
    api.add_exception_handler(RequestValidationError, http_errors.on_validation_error)
    api.add_exception_handler(HTTPException, http_errors.on_http_error)
    api.add_exception_handler(Exception, http_errors.on_unexpected)

    def caller(
        api_key: Annotated[str | None, Header(alias="api-key")] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> Caller:
        if api_key is None and authorization and authorization.lower().startswith("bearer "):
            api_key = authorization[7:].strip()
        return service().keys.authenticate(api_key)

    def extra_mode(extra: Annotated[str, Header(alias="extra-parameters")] = "error") -> ExtraMode:
        if extra not in ("error", "drop", "pass-through"):
            raise InvalidInput(
                "extra-parameters must be error, drop or pass-through", loc=("header", "extra-parameters"), input=extra
            )
        return cast(ExtraMode, extra)

    Auth = Annotated[Caller, Depends(caller)]

    @api.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/info")
    def info(_: Auth, model: str | None = None) -> dict[str, str]:
        d = service().deployment(model)
        return {"model_name": d.model_name, "model_type": d.kind.value, "model_provider_name": d.model_provider}

    @api.get("/models")
    def models(_: Auth) -> dict[str, Any]:
        data = [
            {
                "id": d.name,
                "object": "model",
                "created": 0,
                "owned_by": d.model_provider,
                "model_type": d.kind.value,
                "description": d.description,
            }
            for d in service().config.deployments
        ]
        return {"object": "list", "data": data}

    @api.post("/embeddings")
    async def create_embeddings(
        body: EmbeddingsRequest,
        request: Request,
        who: Auth,
        extra: Annotated[ExtraMode, Depends(extra_mode)],
        deployment_header: Annotated[str | None, Header(alias="azureml-model-deployment")] = None,
    ) -> Response:
        svc = service()
        deployment = svc.deployment(deployment_header or body.model, RunnerKind.EMBEDDINGS)
        payload = embeddings.check(body, deployment, svc.limits, extra)
        return await _submit(svc, who, deployment, payload, request)

    @api.get("/jobs/{job_id}", name="get_job")
    async def get_job(job_id: str, who: Auth) -> Response:
        job = await run_in_threadpool(service().get_job, who, job_id)
        return _job_response(job, 200)

    @api.delete("/jobs/{job_id}")
    async def cancel_job(job_id: str, who: Auth) -> Response:
        job = await run_in_threadpool(service().cancel, who, job_id)
        return _job_response(job, 200)

    return api


async def _submit(
    svc: InferenceService, who: Caller, deployment: Deployment, payload: dict[str, Any], request: Request
) -> Response:
    key = request.headers.get("idempotency-key")
    submitted = await run_in_threadpool(svc.submit, who, deployment, payload, key)
    job = submitted.job
    if "respond-async" not in request.headers.get("prefer", "").lower():
        job = await _wait(svc, who, job, svc.settings.sync_timeout_s)
    if job.status is JobStatus.SUCCEEDED and job.result is not None:
        return JSONResponse(job.result, 200, headers=_headers(job))
    if job.status.terminal:
        return _job_response(job, _terminal_status(job))
    response = _job_response(job, 202)
    response.headers["Operation-Location"] = f"/jobs/{job.id}"
    response.headers["Retry-After"] = str(svc.settings.retry_after_s)
    return response


async def _wait(svc: InferenceService, who: Caller, job: Job, timeout_s: float) -> Job:
    """Poll the job store until the job is terminal or the bound passes (works on both hosts)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while not job.status.terminal and time.monotonic() < deadline:
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 0.1)
        job = await run_in_threadpool(svc.get_job, who, job.id)
    return job


def _terminal_status(job: Job) -> int:
    if job.status is JobStatus.CANCELLED:
        return 409
    if job.status is JobStatus.EXPIRED:
        return 504
    code = job.error.code if job.error else ""
    return 422 if code in ("InvalidInput", "InvalidMessage") else 500


def _headers(job: Job) -> dict[str, str]:
    return {"x-inferq-job-id": job.id, "azureml-model-deployment": job.deployment}


def _job_response(job: Job, status: int) -> JSONResponse:
    body: dict[str, Any] = {
        "id": job.id,
        "object": "job",
        "status": job.status.value,
        "model": job.deployment,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "error": job.error.model_dump() if job.error else None,
        "result": job.result if job.status is JobStatus.SUCCEEDED else None,
    }
    if status >= 400 and job.error:
        body = {"error": job.error.model_dump(), "job": body}
    return JSONResponse(body, status, headers=_headers(job))


app = create_app()
