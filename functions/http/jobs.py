"""Submitting a job from a route and rendering it: sync wait (bounded), or 202 + Operation-Location."""

import asyncio
import time
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from functions.http.errors import validation_body
from functions.http.headers import DEPLOYMENT_HEADER, note, rate_headers
from shared.application.gateway import InferenceService, Submitted
from shared.domain.auth import Caller
from shared.domain.jobs import Job, JobError, JobStatus
from shared.domain.routing import Route

Render = Callable[[dict[str, Any]], Any]


async def submit(
    svc: InferenceService, who: Caller, route: Route, payload: dict[str, Any], request: Request
) -> Submitted:
    """Queue the job (idempotently, with the request's key); its rate-limit headers go on the response."""
    key = request.headers.get("idempotency-key")
    submitted = await run_in_threadpool(svc.submit, who, route, payload, key)
    note(request, rate_headers(submitted.rate))
    return submitted


async def submit_and_respond(
    svc: InferenceService,
    who: Caller,
    route: Route,
    payload: dict[str, Any],
    request: Request,
    render: Render | None = None,
) -> Response:
    """`render` makes the response body from a succeeded job's result (the result itself by default)."""
    submitted = await submit(svc, who, route, payload, request)
    job = submitted.job
    if "respond-async" not in request.headers.get("prefer", "").lower():
        job = await wait_for_job(svc, who, job, svc.settings.sync_timeout_s)
        svc.settle(who, submitted, job)
    if job.status is JobStatus.SUCCEEDED and job.result is not None:
        body = render(job.result) if render is not None else job.result
        return JSONResponse(body, 200, headers=job_headers(job))
    if job.status.terminal:
        return job_response(job, terminal_status(job))
    response = job_response(job, 202)
    response.headers["Operation-Location"] = f"/jobs/{job.id}"
    response.headers["Retry-After"] = str(svc.settings.retry_after_s)
    return response


async def wait_for_job(svc: InferenceService, who: Caller, job: Job, timeout_s: float) -> Job:
    """Poll the job store until the job is terminal or the bound passes (works the same on both hosts)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while not job.status.terminal and time.monotonic() < deadline:
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 0.05)
        job = await run_in_threadpool(svc.get_job, who, job.id)
    return job


def terminal_status(job: Job) -> int:
    if job.status is JobStatus.CANCELLED:
        return 409
    if job.status is JobStatus.EXPIRED:
        return 504
    code = job.error.code if job.error else ""
    if code == "ScriptError":
        return 400  # the scoring script refused the request (most often its input)
    return 422 if code in ("InvalidInput", "InvalidMessage") else 500


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
    return JSONResponse(body, status, headers=job_headers(job))
