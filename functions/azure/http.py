"""The HTTP API on Azure: one HTTP function for every route, on the Functions HTTP streams extension, so a
response's chunks (a chat stream's events) leave the function as the app writes them.

Why this shape:
- `AsgiFunctionApp` runs the app inside the invocation and returns one buffered `func.HttpResponse`.
- With HTTP streams on (the extension imported, `PYTHON_ENABLE_INIT_INDEXING=1`), the host forwards each request
  to a web server in the Python worker (uvicorn under the extension's FastAPI catch-all route) and hands the
  function a FastAPI `Request`; what the function returns is served on that connection. This is app-wide: the
  worker then accepts only the extension's request and response types on every HTTP function, so classic
  `func.HttpRequest` functions (AsgiFunctionApp's) can't stay beside it.
- So the function returns a response that *is* the FastAPI app: served, it runs the app on the request's own
  ASGI channel. Every route, its auth, errors, headers and body (JSON or SSE) come from the same code the local
  host serves under uvicorn, and a client that leaves is seen the same way (`http.disconnect`). The app has no
  lifespan hooks to run: nothing starts before the first request (bootstrap is lazy).
"""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response
from fastapi.responses import Response as FastApiResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from functions.http.app import app as http_api

bp = func.Blueprint()  # type: ignore[no-untyped-call]

# The ASGI HTTP connection scope (asgiref spec); the rest of the scope the worker's catch-all route saw (its
# router, route, path params, exit stacks) is not the app's.
_CONNECTION_KEYS = frozenset(
    {
        "type",
        "asgi",
        "http_version",
        "method",
        "scheme",
        "path",
        "raw_path",
        "query_string",
        "root_path",
        "headers",
        "client",
        "server",
        "state",
        "extensions",
    }
)


class AppResponse(FastApiResponse):
    """A response that serves an ASGI app on the connection it is sent on: status, headers and each body chunk
    are the app's, sent as the app produces them."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__()
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = {key: value for key, value in scope.items() if key in _CONNECTION_KEYS}
        await self.app(connection, receive, send)


@bp.function_name("http_app_func")
@bp.route(route="/{*route}", methods=list(func.HttpMethod), auth_level=func.AuthLevel.ANONYMOUS)
async def http_app_func(req: Request) -> Response:  # noqa: ARG001 (the app reads the request from its channel)
    return AppResponse(http_api)
