"""Refuse request bodies over the limit with 413, without reading them whole into memory."""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """An HTTPException so FastAPI's body parsing passes it through rather than answering 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body is larger than {limit} bytes.")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: Callable[[], int]) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes()
        length = declared_length(scope)
        if length is not None and length > limit:
            await _too_large(send, limit)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _too_large(send, limit)


def declared_length(scope: Scope) -> int | None:
    """The body's length as its Content-Length header says; None when it has none (chunked) or it is no number."""
    length = dict(scope["headers"]).get(b"content-length")
    return int(length) if length is not None and length.isdigit() else None


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        {"error": {"code": "PayloadTooLarge", "message": f"Request body is larger than {limit} bytes."}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-ms-error-code", b"PayloadTooLarge"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
