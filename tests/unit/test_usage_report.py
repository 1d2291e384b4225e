"""Usage reports and metering records: roll-ups, prices, the wire shapes, query validation."""

import csv
import io
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from shared.domain import metering, usage_report
from shared.domain.billing import Granularity
from shared.domain.errors import InvalidInput
from shared.domain.ports import UsageTotal
from tests.unit.billing_fakes import CONFIG

H = datetime(2024, 1, 31, 23, tzinfo=UTC)  # the last hour of January
TOTALS = [
    UsageTotal(H, "acme", "embed", "input_tokens", 1500),
    UsageTotal(datetime(2024, 2, 1, 0, tzinfo=UTC), "acme", "embed", "input_tokens", 1),
    UsageTotal(datetime(2024, 2, 1, 0, tzinfo=UTC), "acme", "chat", "output_tokens", 2000),
    UsageTotal(datetime(2024, 2, 1, 7, tzinfo=UTC), "acme", "embed", "input_tokens", 999),
    UsageTotal(datetime(2024, 2, 2, 7, tzinfo=UTC), "acme", "gone", "input_tokens", 7),  # a deployment since removed
]
START, END = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)


def report(granularity: Granularity) -> dict:
    return usage_report.to_json(usage_report.build(TOTALS, CONFIG, "acme", START, END, granularity))


def test_hourly_items_are_priced_per_deployment_and_meter_as_decimal_strings() -> None:
    body = report(Granularity.HOUR)
    assert body["tenant"] == "acme" and body["currency"] == "EUR" and body["granularity"] == "hour"
    assert body["from"] == "2024-01-01T00:00:00+00:00" and body["to"] == "2024-03-01T00:00:00+00:00"
    assert body["items"][0] == {
        "period_start": "2024-01-31T23:00:00+00:00",
        "deployment": "embed",
        "meter": "input_tokens",
        "tokens": 1500,
        "quantity": "1.5",
        "unit": "1K tokens",
        "unit_price": "0.0001",
        "cost": "0.00015",
    }
    chat = next(i for i in body["items"] if i["deployment"] == "chat")
    assert (chat["quantity"], chat["unit_price"], chat["cost"]) == ("2", "0.0015", "0.003")
    gone = next(i for i in body["items"] if i["deployment"] == "gone")
    assert (gone["unit_price"], gone["cost"]) == ("0", "0")  # billed tokens stay visible, unpriced
    assert body["total_tokens"] == 1500 + 1 + 2000 + 999 + 7
    assert Decimal(body["total_cost"]) == sum(Decimal(i["cost"]) for i in body["items"])
    assert body["total_cost"] == "0.00325"


def test_days_and_months_roll_up_from_hours() -> None:
    days = report(Granularity.DAY)["items"]
    assert [(i["period_start"][:10], i["deployment"], i["tokens"]) for i in days] == [
        ("2024-01-31", "embed", 1500),
        ("2024-02-01", "chat", 2000),
        ("2024-02-01", "embed", 1000),
        ("2024-02-02", "gone", 7),
    ]
    months = report(Granularity.MONTH)["items"]
    assert [(i["period_start"], i["deployment"], i["tokens"], i["cost"]) for i in months] == [
        ("2024-01-01T00:00:00+00:00", "embed", 1500, "0.00015"),
        ("2024-02-01T00:00:00+00:00", "chat", 2000, "0.003"),
        ("2024-02-01T00:00:00+00:00", "embed", 1000, "0.0001"),
        ("2024-02-01T00:00:00+00:00", "gone", 7, "0"),
    ]
    assert report(Granularity.MONTH)["total_cost"] == report(Granularity.HOUR)["total_cost"]


def test_a_report_holds_only_its_tenant() -> None:
    mixed = [*TOTALS, UsageTotal(H, "globex", "embed", "input_tokens", 10**6)]
    built = usage_report.build(mixed, CONFIG, "acme", START, END, Granularity.MONTH)
    assert built.total_tokens == sum(t.tokens for t in TOTALS)


def test_the_requests_meter_is_counted_priced_and_labelled_per_1000_requests() -> None:
    totals = [*TOTALS, UsageTotal(H, "acme", "scorer", "requests", 250)]
    built = usage_report.build(totals, CONFIG, "acme", START, END, Granularity.HOUR)
    body = usage_report.to_json(built)
    (item,) = (i for i in body["items"] if i["meter"] == "requests")
    assert item == {
        "period_start": "2024-01-31T23:00:00+00:00",
        "deployment": "scorer",
        "meter": "requests",
        "requests": 250,
        "quantity": "0.25",
        "unit": "1K requests",
        "unit_price": "0.02",
        "cost": "0.005",
    }
    assert body["total_requests"] == 250 and body["total_tokens"] == sum(t.tokens for t in TOTALS)  # not mixed
    assert body["total_cost"] == "0.00825"  # 0.00325 for the tokens + 0.005 for the requests
    rows = list(csv.DictReader(io.StringIO(usage_report.to_csv(built))))
    assert [(r["meter"], r["tokens"], r["requests"], r["unit"]) for r in rows if r["deployment"] == "scorer"] == [
        ("requests", "", "250", "1K requests")
    ]
    (record,) = (r for r in metering.records(totals, CONFIG) if r["containerType"] == "scorer")
    assert record["meter"] == {"name": "inferq.scorer.requests", "quantity": Decimal("0.25"), "unit": "1K requests"}
    assert record["apiType"] == "score"


def test_csv_has_the_same_rows() -> None:
    built = usage_report.build(TOTALS, CONFIG, "acme", START, END, Granularity.DAY)
    rows = list(csv.DictReader(io.StringIO(usage_report.to_csv(built))))
    items = usage_report.to_json(built)["items"]
    assert len(rows) == len(items)
    for row, item in zip(rows, items, strict=True):
        expected = {"tokens": "", "requests": "", **{k: str(v) for k, v in item.items()}}
        assert row == {**expected, "tenant": "acme", "currency": "EUR"}


NOW = datetime(2024, 5, 17, 10, 42, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (None, None, (datetime(2024, 5, 1, tzinfo=UTC), NOW)),
        ("2024-05-03", None, (datetime(2024, 5, 3, tzinfo=UTC), NOW)),
        (None, "2024-03-10T12:00:00Z", (datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 10, 12, tzinfo=UTC))),
        (
            "2024-05-03T10:30:00+02:00",
            "2024-05-04",
            (datetime(2024, 5, 3, 8, tzinfo=UTC), datetime(2024, 5, 4, tzinfo=UTC)),
        ),
        ("2024-05-03T10:00:00 02:00", None, (datetime(2024, 5, 3, 8, tzinfo=UTC), NOW)),  # '+' lost in a query
        ("2024-05-17T10:00:00Z", None, (datetime(2024, 5, 17, 10, tzinfo=UTC), NOW)),
        (None, "2024-03-01", (datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))),  # February
    ],
)
def test_range_defaults_and_parsing(start: str | None, end: str | None, expected: tuple) -> None:
    assert usage_report.parse_range(start, end, NOW) == expected


@pytest.mark.parametrize(
    ("start", "end", "loc"),
    [
        ("yesterday", None, ("query", "from")),
        (None, "2024-13-01", ("query", "to")),
        ("2024-05-10", "2024-05-09", ("query", "from")),
        ("2024-06-01", None, ("query", "from")),  # after now
        ("2024-05-17T10:50:00Z", None, ("query", "from")),  # after now, though its hour is not
        ("2024-05-10T09:45:00Z", "2024-05-10T09:15:00Z", ("query", "from")),  # after 'to', in the same hour
        (None, "0001-01-01", ("query", "to")),  # the month before it is not a date
        ("0001-01-01T00:00:00+14:00", None, ("query", "from")),  # in UTC it is before year 1
        (None, "9999-12-31T23:00:00Z", ("query", "to")),
    ],
)
def test_bad_ranges_are_invalid_input_naming_the_parameter(start: str | None, end: str | None, loc: tuple) -> None:
    with pytest.raises(InvalidInput) as caught:
        usage_report.parse_range(start, end, NOW)
    assert caught.value.loc == loc


def test_granularity_is_hour_day_or_month() -> None:
    assert usage_report.parse_granularity("Month") is Granularity.MONTH
    with pytest.raises(InvalidInput) as caught:
        usage_report.parse_granularity("week")
    assert caught.value.loc == ("query", "granularity")


def test_metering_records_have_the_containers_shape_and_stable_ids() -> None:
    records = metering.records(TOTALS, CONFIG)
    assert records[0] == {
        "id": records[0]["id"],
        "meter": {"name": "inferq.embed.input_tokens", "quantity": Decimal("1.5"), "unit": "1K tokens"},
        "requestTime": 1706742000,  # 2024-01-31T23:00:00Z in Unix seconds
        "apiType": "embeddings",
        "containerType": "embed",
        "containerVersion": metering.CONTAINER_VERSION,
        "containerId": "acme",
    }
    assert uuid.UUID(records[0]["id"]).version == 5
    assert records[2]["apiType"] == "chat-completion" and records[4]["apiType"] == "unknown"
    assert len({r["id"] for r in records}) == len(records)
    # The same hour re-exported — even with more tokens after a late event — keeps its id: consumers upsert.
    later = metering.records([UsageTotal(H, "acme", "embed", "input_tokens", 1600)], CONFIG)
    assert later[0]["id"] == records[0]["id"] and later[0]["meter"]["quantity"] == Decimal("1.6")
    assert (
        metering.records([UsageTotal(H, "globex", "embed", "input_tokens", 1500)], CONFIG)[0]["id"] != records[0]["id"]
    )


def test_metering_records_are_written_with_the_documented_types_and_every_digit() -> None:
    # 2^53 + 1 tokens: past what a float holds, so a float quantity would lose the last token.
    records = metering.records([UsageTotal(H, "acme", "embed", "input_tokens", 2**53 + 1)], CONFIG)
    text = metering.to_json({"records": records})
    assert '"quantity":9007199254740.993,' in text and '"requestTime":1706742000,' in text
    (record,) = json.loads(text, parse_float=Decimal)["records"]
    assert record["meter"]["quantity"] == Decimal("9007199254740.993") and isinstance(record["requestTime"], int)
    assert json.loads(metering.to_json(metering.records(TOTALS, CONFIG)))[0]["meter"]["quantity"] == 1.5
    whole = metering.records([UsageTotal(H, "acme", "embed", "input_tokens", 2_000_000)], CONFIG)
    assert '"quantity":2000,' in metering.to_json(whole)  # never 2E+3
