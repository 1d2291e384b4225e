"""Billing arithmetic: hours, 1,000-token quantities and exact Decimal costs."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

TOKENS_PER_UNIT = 1000
UNIT = "1K tokens"


def hour_of(moment: datetime) -> datetime:
    """The UTC hour an event belongs to, by its own time (so a late event lands in its hour)."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def quantity(tokens: int) -> Decimal:
    return Decimal(tokens) / TOKENS_PER_UNIT


def cost(tokens: int, unit_price: Decimal) -> Decimal:
    return quantity(tokens) * unit_price
