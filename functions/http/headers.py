"""Headers a route decides before it knows how its response ends: the deployment that serves the request and
the caller's rate limits. The route notes them; the middleware adds them to whatever response goes out (a
result, a 202, a stream, or an error raised after the deployment was chosen), unless the response has them."""

from __future__ import annotations

import math
from collections.abc import Mapping

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.domain.rates import RateState
from shared.domain.routing import Route

SCOPE_KEY = "inferq.response_headers"
DEPLOYMENT_HEADER = "azureml-model-deployment"


class ResponseHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        noted: dict[str, str] = {}
        scope[SCOPE_KEY] = noted  # a dict shared with the route's Request, whatever copies of the scope are made

        async def send_noted(message: Message) -> None:
            if message["type"] == "http.response.start" and noted:
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in noted.items():
                    raw = name.lower().encode("latin-1")
                    if raw not in present:
                        headers.append((raw, value.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_noted)


def note(request: Request, headers: Mapping[str, str]) -> None:
    noted = request.scope.get(SCOPE_KEY)
    if isinstance(noted, dict):
        noted.update(headers)


def note_route(request: Request, route: Route) -> None:
    note(request, {DEPLOYMENT_HEADER: route.deployment.name})


def rate_headers(state: RateState | None) -> dict[str, str]:
    """The `x-ratelimit-*` headers OpenAI clients read (none for a tenant without limits)."""
    headers: dict[str, str] = {}
    for limit in state.limits if state is not None else ():
        headers[f"x-ratelimit-limit-{limit.name}"] = str(limit.limit)
        headers[f"x-ratelimit-remaining-{limit.name}"] = str(limit.remaining)
        headers[f"x-ratelimit-reset-{limit.name}"] = duration(limit.reset_s)
    return headers


def duration(seconds: float) -> str:
    """OpenAI's reset format: "20ms", "1s", "2.5s", "6m0s"."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    minutes, rest = divmod(round(seconds, 3), 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".")
    return f"{int(minutes)}m{text}s" if minutes else f"{text}s"
