"""Billing arithmetic: exact quantities and costs, UTC periods."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import pytest

from shared.domain import billing
from shared.domain.billing import Granularity


def test_quantities_are_exact_thousandths_of_integer_tokens() -> None:
    assert billing.quantity(1234) == Decimal("1.234")
    assert billing.quantity(1) == Decimal("0.001")
    assert billing.quantity(0) == 0
    assert billing.quantity(10**12) == Decimal(10**9)


def test_costs_are_exact_and_rendered_without_exponents() -> None:
    assert billing.cost(1, Decimal("0.0001")) == Decimal("0.0000001")
    assert billing.decimal_text(billing.cost(1, Decimal("0.0001"))) == "0.0000001"
    assert billing.cost(123_456_789, Decimal("0.0015")) == Decimal("185.1851835")
    # Float arithmetic would drift here: a million 1-token events at 0.0001 are exactly 0.1.
    assert billing.total([billing.cost(1, Decimal("0.0001"))] * 1_000_000) == Decimal("0.1")


def test_costs_keep_every_digit_where_the_default_context_would_round() -> None:
    tokens, price = 10**12 - 1, Decimal("0.1234567890123456789")
    exact = billing.cost(tokens, price)
    assert Fraction(exact) == Fraction(tokens, 1000) * Fraction(price)
    assert Fraction(Decimal(tokens) / 1000 * price) != Fraction(exact)  # 28 digits would not do


def test_hours_are_utc_and_by_the_event_time() -> None:
    moment = datetime(2024, 2, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))  # 23:30 UTC the day before
    assert billing.hour_of(moment) == datetime(2024, 1, 31, 23, tzinfo=UTC)
    assert billing.period_of(moment, Granularity.DAY) == datetime(2024, 1, 31, tzinfo=UTC)
    assert billing.period_of(moment, Granularity.MONTH) == datetime(2024, 1, 1, tzinfo=UTC)


def test_hour_index_is_exact_at_the_last_microsecond() -> None:
    last = datetime(2024, 1, 1, 23, 59, 59, 999_999, tzinfo=UTC)
    assert billing.hour_index(last) + 1 == billing.hour_index(last + timedelta(microseconds=1))
    assert billing.EPOCH + billing.hour_index(last) * billing.HOUR == datetime(2024, 1, 1, 23, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2024, 12, 31, 23, 59, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)),
        (datetime(2024, 2, 29, 12, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
        (datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC)),
    ],
)
def test_next_month_start(moment: datetime, expected: datetime) -> None:
    assert billing.next_month_start(moment) == expected
