"""The one table from domain errors to HTTP statuses and bodies."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from functions.http.headers import rate_headers
from shared.domain import errors
from shared.domain.jobs import Job, JobStatus
from shared.domain.tokens import TokenRejected

log = logging.getLogger(__name__)

MAX_ECHO_DEPTH = 32  # levels of a response body that echo input; deeper values are shown as "..."

STATUS: dict[type[errors.InferqError], int] = {
    errors.AuthError: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.ContentFiltered: 400,
    errors.Conflict: 409,
    errors.InvalidInput: 422,
    errors.InputTooLarge: 413,
    errors.QuotaExceeded: 429,
    errors.TransientError: 503,
}


# A job that ended otherwise than succeeded, by its state and error code (the worker's errors are codes, not types).
JOB_STATUS: dict[JobStatus, int] = {JobStatus.CANCELLED: 409, JobStatus.EXPIRED: 504}
JOB_ERROR_STATUS: dict[str, int] = {
    "InvalidInput": 422,
    "InvalidMessage": 422,
    errors.InputTooLarge.code: 413,  # an input over a size limit, found by the worker
    "ScriptError": 400,  # the scoring script refused the request (most often its input)
    "content_filter": 400,  # content safety refused the prompt
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


ERROR_CODE_HEADER = "x-ms-error-code"  # the code Azure clients read without parsing the body
VALIDATION_CODE = errors.InvalidInput.code  # the code of a 422 in the `detail` shape, which has no `error.code`


def error_response(body: dict[str, Any], status: int, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An error response: the body's `error.code` (or the validation code) also as the `x-ms-error-code` header."""
    error = body.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return JSONResponse(body, status, headers={**(headers or {}), ERROR_CODE_HEADER: str(code or VALIDATION_CODE)})


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def validation_body(loc: tuple[str | int, ...], msg: str, type_: str, input_: Any) -> dict[str, Any]:
    return {"detail": [{"loc": list(loc), "msg": msg, "type": type_, "input": input_}]}


async def on_domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.InferqError)
    status = status_of(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, errors.InputTooLarge):  # the error shape of a 413, naming the input as a 422 does
        body = {"error": {"code": exc.code, "message": exc.message, "loc": list(exc.loc)}}
        return error_response(_jsonable(body), status)
    if isinstance(exc, errors.InvalidInput):
        body = validation_body(exc.loc, exc.message, "invalid_parameter", exc.input)
        return error_response(_jsonable(body), status)
    if isinstance(exc, errors.QuotaExceeded):
        headers["Retry-After"] = str(exc.retry_after_s)
        if isinstance(exc, errors.RateLimited):  # what OpenAI clients read to back off
            headers["retry-after-ms"] = str(math.ceil(exc.state.retry_after_s * 1000))
            headers.update(rate_headers(exc.state))
    elif isinstance(exc, errors.TransientError):
        headers["Retry-After"] = "1"
    elif isinstance(exc, TokenRejected):  # RFC 6750: the reason, for clients that read the header
        description = exc.message.replace("\\", "").replace('"', "'")
        headers["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{description}"'
    elif isinstance(exc, errors.AuthError):
        headers["WWW-Authenticate"] = "Bearer"
    elif isinstance(exc, errors.ContentFiltered):
        return error_response(content_filter_body(exc), status)
    return error_response(_jsonable(error_body(exc.code, exc.message)), status, headers)


def content_filter_body(exc: errors.ContentFiltered) -> dict[str, Any]:
    """Azure OpenAI's shape of a filtered prompt, which its clients read: the inner error names each category's
    severity and whether it filtered, and the custom blocklists that matched."""
    inner = {"code": "ResponsibleAIPolicyViolation", "content_filter_result": exc.result.annotation()}
    error = {"code": exc.code, "message": exc.message, "param": "prompt", "status": 400, "innererror": inner}
    return {"error": error}


async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [_not_json(e, exc.body) if e.get("type") == "json_invalid" else _detail(e) for e in exc.errors()]
    return error_response({"detail": _jsonable(detail)}, 422)


def _detail(error: dict[str, Any]) -> dict[str, Any]:
    loc = list(error.get("loc", ()))
    return {"loc": loc, "msg": error.get("msg", ""), "type": error.get("type", ""), "input": error.get("input")}


def _not_json(error: dict[str, Any], doc: Any) -> dict[str, Any]:
    """A body that isn't JSON: why, and where when the parser knows (`functions/http/body.py` leaves `doc` empty
    when it doesn't); the loc is the body, which is the parameter at fault."""
    reason = (error.get("ctx") or {}).get("error") or "unreadable"
    loc = error.get("loc", ())
    where = f" at character {loc[-1]}" if doc and len(loc) > 1 and isinstance(loc[-1], int) else ""
    msg = f"The body can't be read as JSON: {reason}{where}."
    return {"loc": ["body"], "msg": msg, "type": "json_invalid", "input": None}


async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}.get(exc.status_code, "BadRequest")
    return error_response(_jsonable(error_body(code, str(exc.detail))), exc.status_code, exc.headers)


async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return error_response(error_body("InternalError", "The server failed to handle the request."), 500)


def _jsonable(value: Any, depth: int = 0) -> Any:
    """What a response may carry of any value: echoed input included, whatever the body held. Keys are escaped
    like values; past MAX_ECHO_DEPTH levels a value is shown as "..." (a body may be nested up to
    `body.MAX_DEPTH`, and an echo needs no more than the first levels to point at the problem)."""
    if isinstance(value, dict | list | tuple) and depth >= MAX_ECHO_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {_text(str(k)): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # Python's json reads NaN and Infinity, but JSON can't carry them back: echoed as text
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return _text(str(value))


def _text(value: str) -> str:
    """JSON escapes can spell lone surrogates ("\\ud800"), which UTF-8 can't carry back: echoed escaped."""
    return value if value.isascii() else value.encode("utf-8", "backslashreplace").decode("utf-8")
