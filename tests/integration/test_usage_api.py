"""GET /usage and /usage/metering on the HTTP app, over a SQLite ledger with usage at known hours."""

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from functions.http.app import app
from shared.bootstrap import Inferq, set_app
from shared.schemas.usage import Meter, usage_event
from tests.conftest import ADMIN_KEY, KEYS

DEPLOYMENT = "all-MiniLM-L6-v2"
H1 = datetime(2024, 1, 31, 23, tzinfo=UTC)
H2 = datetime(2024, 2, 1, 0, tzinfo=UTC)
RANGE = {"from": "2024-01-01", "to": "2024-03-01"}


@pytest.fixture
def client(service: Inferq) -> Iterator[TestClient]:
    events = [
        ("acme", 1500, H1),
        ("acme", 500, H1 + timedelta(minutes=59)),
        ("acme", 1, H2),
        ("globex", 7777, H2),
        ("acme", 10**6, datetime.now(UTC)),  # the current hour: not closed yet
    ]
    service.ledger.ingest(
        [
            usage_event(
                job_id=f"job-{i}",
                tenant=tenant,
                endpoint=DEPLOYMENT,
                deployment=DEPLOYMENT,
                model="m",
                meter=Meter.INPUT_TOKENS,
                tokens=tokens,
                time=time,
            )
            for i, (tenant, tokens, time) in enumerate(events)
        ]
    )
    set_app(service)
    with TestClient(app) as c:
        yield c
    set_app(None)


def get(client: TestClient, path: str, key: str | None = KEYS["acme"], **params: str) -> dict:
    r = client.get(path, params=params, headers={"api-key": key} if key else {})
    return {"status": r.status_code, "body": r.json(), "headers": r.headers}


def test_usage_by_hour_day_and_month_for_the_callers_tenant(client: TestClient) -> None:
    r = get(client, "/usage", **RANGE, granularity="hour")
    assert r["status"] == 200
    body = r["body"]
    assert (body["tenant"], body["currency"], body["granularity"]) == ("acme", "USD", "hour")
    assert (body["from"], body["to"]) == ("2024-01-01T00:00:00+00:00", "2024-03-01T00:00:00+00:00")
    assert body["items"] == [
        {
            "period_start": "2024-01-31T23:00:00+00:00",
            "deployment": DEPLOYMENT,
            "meter": "input_tokens",
            "tokens": 2000,
            "quantity": "2",
            "unit": "1K tokens",
            "unit_price": "0.0001",
            "cost": "0.0002",
        },
        {
            "period_start": "2024-02-01T00:00:00+00:00",
            "deployment": DEPLOYMENT,
            "meter": "input_tokens",
            "tokens": 1,
            "quantity": "0.001",
            "unit": "1K tokens",
            "unit_price": "0.0001",
            "cost": "0.0000001",
        },
    ]
    assert (body["total_tokens"], body["total_cost"]) == (2001, "0.0002001")
    days = get(client, "/usage", **RANGE, granularity="day")["body"]["items"]
    assert [(i["period_start"], i["tokens"]) for i in days] == [
        ("2024-01-31T00:00:00+00:00", 2000),
        ("2024-02-01T00:00:00+00:00", 1),
    ]
    assert get(client, "/usage", **RANGE)["body"]["granularity"] == "day"  # the default


def test_defaults_are_this_month_until_now(client: TestClient) -> None:
    body = get(client, "/usage")["body"]
    now = datetime.now(UTC)
    assert datetime.fromisoformat(body["from"]) == now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    assert body["total_tokens"] == 10**6


def test_csv_returns_the_same_rows(client: TestClient) -> None:
    r = client.get(
        "/usage", params={**RANGE, "granularity": "hour"}, headers={"api-key": KEYS["acme"], "Accept": "text/csv"}
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    items = get(client, "/usage", **RANGE, granularity="hour")["body"]["items"]
    assert [{k: row[k] for k in items[0]} for row in rows] == [{k: str(v) for k, v in i.items()} for i in items]
    assert {row["tenant"] for row in rows} == {"acme"} and {row["currency"] for row in rows} == {"USD"}


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"from": "last tuesday"}, ["query", "from"]),
        ({"to": "2024-02-30"}, ["query", "to"]),
        ({"from": "2024-02-02", "to": "2024-02-01"}, ["query", "from"]),
        ({"granularity": "fortnight"}, ["query", "granularity"]),
    ],
)
def test_bad_parameters_are_422_in_the_detail_shape(client: TestClient, params: dict, loc: list) -> None:
    r = get(client, "/usage", **params)
    assert r["status"] == 422
    (detail,) = r["body"]["detail"]
    assert detail["loc"] == loc and detail["msg"] and detail["type"] and "input" in detail


def test_tenants_see_only_their_own_usage(client: TestClient) -> None:
    assert get(client, "/usage", key=KEYS["globex"], **RANGE)["body"]["total_tokens"] == 7777
    assert get(client, "/usage", **RANGE, tenant="acme")["status"] == 200  # naming yourself is fine
    r = get(client, "/usage", **RANGE, tenant="globex")
    assert r["status"] == 403 and r["body"]["error"]["code"] == "Forbidden"
    assert get(client, "/usage/metering", **RANGE, tenant="globex")["status"] == 403
    assert get(client, "/usage", key=None)["status"] == 401


def test_an_admin_key_names_the_tenant(client: TestClient) -> None:
    assert get(client, "/usage", key=ADMIN_KEY, **RANGE, tenant="globex")["body"]["total_tokens"] == 7777
    missing = get(client, "/usage", key=ADMIN_KEY, **RANGE)
    assert missing["status"] == 422 and missing["body"]["detail"][0]["loc"] == ["query", "tenant"]
    assert get(client, "/usage", key=ADMIN_KEY, tenant="nobody")["status"] == 404


def test_metering_exports_closed_hours_with_ids_stable_across_exports(client: TestClient) -> None:
    records = get(client, "/usage/metering", **RANGE)["body"]["records"]
    # requestTime in Unix seconds (2024-01-31T23:00Z, 2024-02-01T00:00Z), quantity a JSON number
    assert [(r["requestTime"], r["meter"]) for r in records] == [
        (1706742000, {"name": f"inferq.{DEPLOYMENT}.input_tokens", "quantity": 2, "unit": "1K tokens"}),
        (1706745600, {"name": f"inferq.{DEPLOYMENT}.input_tokens", "quantity": 0.001, "unit": "1K tokens"}),
    ]
    assert {(r["containerId"], r["containerType"], r["apiType"]) for r in records} == {
        ("acme", DEPLOYMENT, "embeddings")
    }
    assert get(client, "/usage/metering", **RANGE)["body"]["records"] == records
    everyone = get(client, "/usage/metering", key=ADMIN_KEY, **RANGE)["body"]["records"]
    assert {r["containerId"] for r in everyone} == {"acme", "globex"}
    # Up to now: the current hour (a million tokens so far) is not exported until it is over.
    current = get(client, "/usage/metering")["body"]["records"]
    assert all(r["meter"]["quantity"] != 1000 for r in current)
