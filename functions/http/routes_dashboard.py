"""The dashboard: one static page (`dashboard/`: the HTML, its script, vendored Chart.js) that reads the JSON API
with the caller's key, and `GET /dashboard/summary`, the figures no other route gives (budget, failed jobs).

The page itself holds no data, so it is served without a key (a browser can't send a header when it opens a
page; the key stays in the URL fragment or the tab's sessionStorage and goes out only as the `api-key` header of
the page's own requests), under a Content-Security-Policy that allows nothing but this origin's script and API."""

import base64
import hashlib
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException

from functions.http.body import StrictJsonRoute
from functions.http.deps import Auth, Bill

FOLDER = Path(__file__).parent / "dashboard"
# URL path under /dashboard/ → file and media type: these and nothing else (no path from the request reaches disk).
ASSETS = {
    "dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "vendor/chart.umd.min.js": ("vendor/chart.umd.min.js", "text/javascript; charset=utf-8"),
}

page = APIRouter(include_in_schema=False)
api = APIRouter(route_class=StrictJsonRoute)


@cache
def _file(name: str) -> bytes:
    return (FOLDER / name).read_bytes()


@cache
def _headers() -> dict[str, str]:
    """Strict headers for every file of the page. The page's one inline `<style>` is allowed by its hash (no
    `unsafe-inline`); scripts only from this origin, requests only to it, no frames, forms, plugins or base."""
    style = re.search(rb"<style>(.*?)</style>", _file("index.html"), re.S)
    digest = base64.b64encode(hashlib.sha256(style.group(1) if style else b"").digest()).decode()
    policy = (
        "default-src 'none'; script-src 'self'; connect-src 'self'; "
        f"style-src 'self' 'sha256-{digest}'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Cache-Control": "no-cache",
    }


@page.get("/dashboard")
async def dashboard() -> Response:
    return Response(_file("index.html"), media_type="text/html; charset=utf-8", headers=_headers())


@page.get("/dashboard/{asset:path}")
async def dashboard_asset(asset: str) -> Response:
    if asset == "":  # /dashboard/: the page's relative URLs need /dashboard (relative here, for any prefix)
        return RedirectResponse("../dashboard", 308)
    if asset not in ASSETS:
        raise HTTPException(404, "Not Found")
    name, media_type = ASSETS[asset]
    return Response(_file(name), media_type=media_type, headers=_headers())


Tenant = Annotated[str | None, Query(description="admin keys only: whose figures (default: the first tenant)")]


@api.get("/dashboard/summary")
async def summary(bill: Bill, who: Auth, tenant: Tenant = None) -> dict[str, Any]:
    """The tenant the figures are for (an admin key picks one), the tenants to pick from, its `monthly_budget`,
    and its jobs that failed or expired in the last 24 hours, newest first, with their error."""
    return await run_in_threadpool(bill.overview, who, tenant or None)
