"""Billing arithmetic: UTC periods (hour, day, month), 1,000-unit quantities and exact Decimal costs.

Every meter counts whole units — tokens, or requests for the `requests` meter — priced per 1,000. Counts are
exact integers; money is Decimal computed in a context that traps inexact results, so a cost is either exact
or an error — never silently rounded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow
from enum import StrEnum

from shared.schemas.usage import Meter

TOKENS_PER_UNIT = 1000
UNIT = "1K tokens"
REQUESTS_UNIT = "1K requests"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)

_EXACT = Context(prec=200, traps=[Inexact, InvalidOperation, Overflow])


class Granularity(StrEnum):
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


def hour_of(moment: datetime) -> datetime:
    """The UTC hour an event belongs to, by its own time (so a late event lands in its hour)."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_index(moment: datetime) -> int:
    """Whole hours since the epoch, exactly (timedelta arithmetic, no float rounding at 59.999999 s)."""
    return (moment - EPOCH) // HOUR


def period_of(hour: datetime, granularity: Granularity) -> datetime:
    """The start of the hour, day or month (UTC) that `hour` rolls up into."""
    hour = hour_of(hour)
    if granularity is Granularity.DAY:
        return hour.replace(hour=0)
    if granularity is Granularity.MONTH:
        return hour.replace(day=1, hour=0)
    return hour


def month_start(moment: datetime) -> datetime:
    return period_of(moment, Granularity.MONTH)


def next_month_start(moment: datetime) -> datetime:
    start = month_start(moment)
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def unit(meter: str) -> str:
    """What a meter's quantity counts: "1K requests" for the requests meter, "1K tokens" for the others."""
    return REQUESTS_UNIT if meter == Meter.REQUESTS else UNIT


def quantity(tokens: int) -> Decimal:
    """Tokens in 1,000-token units, exactly (`Decimal(tokens) / 1000`)."""
    return _EXACT.divide(Decimal(tokens), Decimal(TOKENS_PER_UNIT))


def cost(tokens: int, unit_price: Decimal) -> Decimal:
    """The exact cost of `tokens` at `unit_price` per 1,000 tokens."""
    return _EXACT.multiply(quantity(tokens), unit_price)


def total(amounts: list[Decimal]) -> Decimal:
    result = Decimal(0)
    for amount in amounts:
        result = _EXACT.add(result, amount)
    return result


def decimal_text(value: Decimal) -> str:
    """Decimal as a plain JSON string, exact and without trailing zeros ("0.0000001", "2"; never "1E-7")."""
    return format(value.normalize(_EXACT), "f")
