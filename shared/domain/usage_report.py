"""Usage reports: the ledger's hourly totals rolled up to hours, days or months (UTC) and priced from the config.

Pure functions: the service fetches `UsageLedger.hourly_totals`, these shape, price and render them.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from shared.domain import billing
from shared.domain.billing import Granularity
from shared.domain.config import AppConfig
from shared.domain.errors import InvalidInput, NotFound
from shared.domain.ports import UsageTotal
from shared.schemas.usage import Meter

CSV_COLUMNS = (
    "tenant",
    "period_start",
    "deployment",
    "meter",
    "tokens",
    "requests",
    "quantity",
    "unit",
    "unit_price",
    "cost",
    "currency",
)


@dataclass(frozen=True)
class UsageLine:
    period_start: datetime
    deployment: str
    meter: str
    tokens: int  # the meter's count: tokens, or requests for the requests meter
    quantity: Decimal
    unit_price: Decimal
    cost: Decimal


@dataclass(frozen=True)
class UsageReport:
    tenant: str
    currency: str
    start: datetime
    end: datetime
    granularity: Granularity
    items: tuple[UsageLine, ...]

    @property
    def total_tokens(self) -> int:
        return sum(line.tokens for line in self.items if line.meter != Meter.REQUESTS)

    @property
    def total_requests(self) -> int:
        """Requests billed by the request (scoring scripts); token-billed requests are not counted here."""
        return sum(line.tokens for line in self.items if line.meter == Meter.REQUESTS)

    @property
    def total_cost(self) -> Decimal:
        return billing.total([line.cost for line in self.items])


def unit_price(config: AppConfig, deployment: str, meter: str) -> Decimal:
    """The configured price per 1,000 tokens (or requests); a meter without a price, or of a deployment since
    removed, is free."""
    try:
        return config.deployment(deployment).prices.get(Meter(meter), Decimal(0))
    except (NotFound, ValueError):
        return Decimal(0)


def build(
    totals: Iterable[UsageTotal],
    config: AppConfig,
    tenant: str,
    start: datetime,
    end: datetime,
    granularity: Granularity,
) -> UsageReport:
    tokens: dict[tuple[datetime, str, str], int] = defaultdict(int)
    for t in totals:
        if t.tenant == tenant:  # the ledger was asked for this tenant; this keeps it so whatever it returns
            tokens[(billing.period_of(t.period_start, granularity), t.deployment, t.meter)] += t.tokens
    items = tuple(
        _line(period, deployment, meter, n, unit_price(config, deployment, meter))
        for (period, deployment, meter), n in sorted(tokens.items())
    )
    return UsageReport(tenant, config.currency, start, end, granularity, items)


def cost_of(totals: Iterable[UsageTotal], config: AppConfig) -> Decimal:
    """What the totals cost, summed (exact)."""
    return billing.total([billing.cost(t.tokens, unit_price(config, t.deployment, t.meter)) for t in totals])


def to_json(report: UsageReport) -> dict[str, Any]:
    """The /usage body; Decimal values are strings, so no client parses money as a float."""
    return {
        "tenant": report.tenant,
        "currency": report.currency,
        "from": report.start.isoformat(),
        "to": report.end.isoformat(),
        "granularity": report.granularity.value,
        "items": [_item(line) for line in report.items],
        "total_tokens": report.total_tokens,
        "total_requests": report.total_requests,
        "total_cost": billing.decimal_text(report.total_cost),
    }


def to_csv(report: UsageReport) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for line in report.items:
        row = {"tokens": "", "requests": "", **_item(line)}  # one of the two counts, the other left empty
        writer.writerow({"tenant": report.tenant, **row, "currency": report.currency})
    return out.getvalue()


def parse_range(start_text: str | None, end_text: str | None, now: datetime) -> tuple[datetime, datetime]:
    """[from, to) from the query: `to` defaults to now, `from` to the start of the month `to` ends (so
    `to=2024-03-01` means February); `from` is taken from the start of its hour (the ledger's resolution).
    Dates without a zone are UTC."""
    end = parse_moment(end_text, "to") if end_text else now
    start = parse_moment(start_text, "from") if start_text else billing.month_start(end - timedelta(microseconds=1))
    if start > end:  # as given, before it is taken to its hour (10:50 is after 10:42, though 10:00 is not)
        raise InvalidInput("'from' must not be after 'to'.", loc=("query", "from"), input=start_text)
    return billing.hour_of(start), end


def parse_moment(text: str, name: str) -> datetime:
    """An ISO 8601 date or date-time; without an offset it is UTC."""
    candidates = [text]
    if " " in text.strip():  # an unencoded '+' in a query string arrives as a space: "…T10:00:00 02:00"
        head, _, tail = text.strip().rpartition(" ")
        candidates.append(f"{head}+{tail}")
    for candidate in candidates:
        try:
            moment = datetime.fromisoformat(candidate.strip())
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        except (ValueError, OverflowError):
            continue
        if not 1970 <= moment.year <= 9998:  # keeps month and hour arithmetic away from datetime's limits
            raise InvalidInput(f"'{name}' must be between 1970 and 9998.", loc=("query", name), input=text)
        return moment
    raise InvalidInput(
        f"'{name}' must be an ISO 8601 date or date-time (e.g. 2024-05-01 or 2024-05-01T13:00:00Z).",
        loc=("query", name),
        input=text,
    )


def parse_granularity(text: str) -> Granularity:
    try:
        return Granularity(text.lower())
    except ValueError:
        raise InvalidInput(
            "granularity must be hour, day or month.", loc=("query", "granularity"), input=text
        ) from None


def _line(period: datetime, deployment: str, meter: str, tokens: int, price: Decimal) -> UsageLine:
    return UsageLine(period, deployment, meter, tokens, billing.quantity(tokens), price, billing.cost(tokens, price))


def _item(line: UsageLine) -> dict[str, Any]:
    count = "requests" if line.meter == Meter.REQUESTS else "tokens"
    return {
        "period_start": line.period_start.isoformat(),
        "deployment": line.deployment,
        "meter": line.meter,
        count: line.tokens,
        "quantity": billing.decimal_text(line.quantity),
        "unit": billing.unit(line.meter),
        "unit_price": billing.decimal_text(line.unit_price),
        "cost": billing.decimal_text(line.cost),
    }
