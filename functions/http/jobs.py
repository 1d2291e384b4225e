"""Submitting a job from a route and rendering it: sync wait (bounded), or 202 + Operation-Location."""

from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from functions.http.body_limit import declared_length
from functions.http.errors import error_response, job_status, validation_body
from functions.http.headers import DEPLOYMENT_HEADER, note, rate_headers
from functions.http.json_response import FastJSONResponse
from shared.application.gateway import Gateway, Submitted
from shared.domain.auth import Caller
from shared.domain.jobs import Job, JobError, JobStatus
from shared.domain.routing import Route
from shared.runtimes.base import ExtraMode


async def submit(gw: Gateway, who: Caller, route: Route, body: Any, extra: ExtraMode, request: Request) -> Submitted:
    """Admit, check and queue the job (idempotently, with the request's key): off the event loop (the check may
    count prompt tokens, the store may be across a network), unless the gateway finds it cheaper than a thread
    hand-off; its rate-limit headers go on the response."""
    key = request.headers.get("idempotency-key")
    if gw.accepts_on_loop(who, route, declared_length(request.scope)):
        submitted = gw.accept(who, route, body, extra, key)
    else:
        submitted = await run_in_threadpool(gw.accept, who, route, body, extra, key)
    note(request, rate_headers(submitted.rate))
    return submitted


async def submit_and_respond(
    gw: Gateway, who: Caller, route: Route, body: Any, extra: ExtraMode, request: Request
) -> Response:
    submitted = await submit(gw, who, route, body, extra, request)
    job = submitted.job
    if "respond-async" not in request.headers.get("prefer", "").lower():
        job = await gw.wait(job, gw.settings.sync_timeout_s)
        gw.settle(submitted, job)
    if job.status is JobStatus.SUCCEEDED and job.result is not None:
        return FastJSONResponse(gw.render(job), 200, headers=job_headers(job))
    if job.status.terminal:
        return job_response(job, job_status(job))
    response = job_response(job, 202)
    response.headers["Operation-Location"] = f"/jobs/{job.id}"
    response.headers["Retry-After"] = str(gw.settings.retry_after_s)
    return response


def job_headers(job: Job) -> dict[str, str]:
    return {"x-inferq-job-id": job.id, DEPLOYMENT_HEADER: job.deployment}


def job_response(job: Job, status: int) -> JSONResponse:
    body: dict[str, Any] = {
        "id": job.id,
        "object": "job",
        "status": job.status.value,
        "model": job.deployment,
        "endpoint": job.endpoint or job.deployment,
        "deployment": job.deployment,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "error": job.error.model_dump() if job.error else None,
        "result": job.result if job.status is JobStatus.SUCCEEDED else None,
    }
    if status >= 400:  # the documented error shape, which the SDKs read, also for a job that has no error
        error = job.error or JobError(code="Conflict", message=f"Job {job.id} is {job.status}.")
        if status == 422:  # the worker refused the input: the 422 shape the clients parse, as at the edge
            body = {**validation_body(("body",), error.message, "invalid_parameter", None), "job": body}
        else:
            body = {"error": error.model_dump(), "job": body}
        return error_response(body, status, job_headers(job))
    return FastJSONResponse(body, status, headers=job_headers(job))
