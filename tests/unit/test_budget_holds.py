"""A tenant's shared budget count: sums per 10 s bucket (its size follows time, not the number of requests),
holds that lapse, settled costs counted until a ledger figure includes them, and only in their month."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from shared.domain.budget_holds import TenantHolds, bucket

NOW = datetime(2024, 3, 31, 23, 59, 0, tzinfo=UTC)
E = Decimal("0.000001")


def test_a_thousand_holds_in_one_bucket_are_one_sum_and_lapse_together() -> None:
    holds = TenantHolds()
    for i in range(1000):
        holds = holds.hold(bucket(NOW + timedelta(seconds=901, milliseconds=i)), E)
    assert len(holds.held) == 1 and holds.counted(NOW, NOW) == 1000 * E
    later = NOW + timedelta(seconds=910)
    assert holds.counted(later, NOW) == 0 and holds.pruned(later, 40) == TenantHolds()
    assert TenantHolds.from_json(*holds.to_json()) == holds


def test_settling_gives_the_estimate_back_and_counts_the_cost_until_the_ledger_has_it() -> None:
    expires = bucket(NOW + timedelta(seconds=900))
    holds = TenantHolds().hold(expires, 10 * E).hold(expires, 10 * E)
    settled = holds.settle(expires, 10 * E, bucket(NOW), 3 * E)
    assert settled.counted(NOW, NOW - timedelta(seconds=30)) == 13 * E
    assert settled.counted(NOW, NOW + timedelta(seconds=1)) == 10 * E  # a figure that includes it
    lapsed = TenantHolds().settle(expires, 10 * E, bucket(NOW), 3 * E)  # its hold had lapsed: nothing to give
    assert lapsed.held == {} and lapsed.spent == {bucket(NOW): 3 * E}


def test_a_cost_settled_last_month_does_not_count_in_this_one() -> None:
    holds = TenantHolds().settle(0, Decimal(0), bucket(NOW), 3 * E)
    assert holds.counted(NOW, NOW - timedelta(days=1)) == 3 * E
    assert holds.counted(NOW + timedelta(minutes=2), NOW - timedelta(days=1)) == 0  # April
