"""Usage and metering routes: the caller's own tenant (an admin key may name one), JSON or CSV; and the
per-deployment view for operators."""

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from functions.http.body import StrictJsonRoute
from functions.http.deps import Auth, Bill
from shared.domain import metering, usage_report

router = APIRouter(route_class=StrictJsonRoute)

From = Annotated[str | None, Query(alias="from", description="ISO 8601 (UTC without offset); default: month start")]
To = Annotated[str | None, Query(description="ISO 8601, exclusive; default: now")]
Since = Annotated[str | None, Query(alias="from", description="ISO 8601; default: 24 hours before `to`")]
Tenant = Annotated[str | None, Query(description="admin keys only: whose usage")]


@router.get("/usage")
async def get_usage(
    request: Request,
    bill: Bill,
    who: Auth,
    start: From = None,
    to: To = None,
    granularity: str = "day",
    tenant: Tenant = None,
) -> Response:
    report = await run_in_threadpool(bill.usage_report, who, start, to, granularity, tenant or None)
    if _wants_csv(request.headers.get("accept", "")):
        filename = f"usage-{report.tenant}-{report.start:%Y%m%dT%H}-{report.end:%Y%m%dT%H}.csv"
        return Response(
            usage_report.to_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return JSONResponse(usage_report.to_json(report))


@router.get("/usage/metering")
async def get_metering(bill: Bill, who: Auth, start: From = None, to: To = None, tenant: Tenant = None) -> Response:
    records = await run_in_threadpool(bill.metering_records, who, start, to, tenant or None)
    return Response(metering.to_json({"records": records}), media_type="application/json")  # exact quantities


@router.get("/deployments")
async def get_deployments(bill: Bill, who: Auth, start: Since = None, to: To = None) -> Response:
    """Admin keys only: endpoints, deployments, weights, and per deployment requests, errors, latency and cost."""
    return JSONResponse(await run_in_threadpool(bill.deployments_view, who, start, to))


def _wants_csv(accept: str) -> bool:
    """CSV when the client asks for it ahead of JSON (`Accept: text/csv`); JSON otherwise."""
    ranked: dict[str, float] = {}
    for part in accept.lower().split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = next((p[2:] for p in params if p.startswith("q=")), "1")
        try:
            ranked[media] = float(q)
        except ValueError:
            ranked[media] = 0.0
    csv_q = ranked.get("text/csv", 0.0)
    return csv_q > ranked.get("application/json", 0.0) and csv_q >= ranked.get("*/*", 0.0)
