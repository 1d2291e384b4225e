"""The API's OpenAPI schema and Swagger UI, for API keys only, or not at all (`INFERQ_DOCS`; off on Azure unless
set). The page carries the schema itself: a browser sends a key with the page, not with the page's own fetches."""

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

from functions.http.deps import Auth
from shared.bootstrap import get_app


async def served() -> None:
    """Switched off, the routes answer as routes that don't exist (checked before the key: nothing to tell).
    `async`: no I/O, so no thread hand-off."""
    if not get_app().settings.docs_served:
        raise HTTPException(404, "Not Found")


router = APIRouter(include_in_schema=False, dependencies=[Depends(served)])


@router.get("/openapi.json")
def openapi(request: Request, _: Auth) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
def docs(request: Request, _: Auth) -> HTMLResponse:
    schema = request.app.openapi()
    return get_swagger_ui_html(
        openapi_url="openapi.json", title=f"{schema['info']['title']} API", swagger_ui_parameters={"spec": schema}
    )
