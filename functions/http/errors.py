"""The one table from domain errors to HTTP statuses and bodies."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from functions.http.headers import rate_headers
from shared.domain import errors
from shared.domain.jobs import Job, JobStatus

log = logging.getLogger(__name__)

STATUS: dict[type[errors.InferqError], int] = {
    errors.AuthError: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.InvalidInput: 422,
    errors.QuotaExceeded: 429,
    errors.TransientError: 503,
}


# A job that ended otherwise than succeeded, by its state and error code (the worker's errors are codes, not types).
JOB_STATUS: dict[JobStatus, int] = {JobStatus.CANCELLED: 409, JobStatus.EXPIRED: 504}
JOB_ERROR_STATUS: dict[str, int] = {
    "InvalidInput": 422,
    "InvalidMessage": 422,
    "ScriptError": 400,  # the scoring script refused the request (most often its input)
}


def job_status(job: Job) -> int:
    if job.status in JOB_STATUS:
        return JOB_STATUS[job.status]
    return JOB_ERROR_STATUS.get(job.error.code if job.error else "", 500)


def status_of(exc: errors.InferqError) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 500


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def validation_body(loc: tuple[str | int, ...], msg: str, type_: str, input_: Any) -> dict[str, Any]:
    return {"detail": [{"loc": list(loc), "msg": msg, "type": type_, "input": input_}]}


async def on_domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.InferqError)
    status = status_of(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, errors.InvalidInput):
        body = validation_body(exc.loc, exc.message, "invalid_parameter", exc.input)
        return JSONResponse(_jsonable(body), status)
    if isinstance(exc, errors.QuotaExceeded):
        headers["Retry-After"] = str(exc.retry_after_s)
        if isinstance(exc, errors.RateLimited):  # what OpenAI clients read to back off
            headers["retry-after-ms"] = str(math.ceil(exc.state.retry_after_s * 1000))
            headers.update(rate_headers(exc.state))
    elif isinstance(exc, errors.TransientError):
        headers["Retry-After"] = "1"
    elif isinstance(exc, errors.AuthError):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(_jsonable(error_body(exc.code, exc.message)), status, headers=headers)


async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", ""), "input": e.get("input")}
        for e in exc.errors()
    ]
    return JSONResponse({"detail": _jsonable(detail)}, 422)


async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}.get(exc.status_code, "BadRequest")
    return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)


async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return JSONResponse(error_body("InternalError", "The server failed to handle the request."), 500)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # Python's json reads NaN and Infinity, but JSON can't carry them back: echoed as text
    if isinstance(value, str) and not value.isascii():
        # JSON escapes can spell lone surrogates ("\\ud800"), which UTF-8 can't carry back: echoed escaped.
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
