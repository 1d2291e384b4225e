"""BudgetReservations contract (fake, SQLite and Azure Table storage): a tenant's holds start empty and round-trip
exactly; a change that returns None writes nothing; tenants are apart; and updates from two instances at once
(two SQLite connections to one file, two Table clients) are atomic: none is lost, and a bound checked inside
the update holds exactly."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from shared.domain.budget_holds import TenantHolds
from shared.domain.ports import BudgetReservations

ONE = Decimal("0.000001")


def read(reservations: BudgetReservations, tenant: str) -> TenantHolds:
    seen: list[TenantHolds] = []

    def look(holds: TenantHolds) -> None:
        seen.append(holds)

    assert reservations.update(tenant, look) is False
    return seen[-1]


def test_holds_start_empty_and_round_trip_exactly(reservations: BudgetReservations) -> None:
    assert read(reservations, "acme") == TenantHolds()
    holds = TenantHolds({1_700_000_010: Decimal("0.000000123456789")}, {1_700_000_000: Decimal("12.5")})
    assert reservations.update("acme", lambda _: holds) is True
    assert read(reservations, "acme") == holds
    assert reservations.update("acme", lambda _: TenantHolds()) is True
    assert read(reservations, "acme") == TenantHolds()


def test_tenants_are_apart_whatever_their_names(reservations: BudgetReservations) -> None:
    odd = "tenant/with#odd?chars"
    reservations.update(odd, lambda h: h.hold(100, ONE))
    reservations.update("globex", lambda h: h.hold(100, 2 * ONE))
    assert read(reservations, odd).held == {100: ONE}
    assert read(reservations, "globex").held == {100: 2 * ONE}
    assert read(reservations, "acme") == TenantHolds()


def test_concurrent_updates_from_two_instances_lose_nothing_and_a_checked_bound_holds(
    reservation_instances: tuple[BudgetReservations, BudgetReservations],
) -> None:
    def add(n: int) -> bool:
        return reservation_instances[n % 2].update("acme", lambda h: h.hold(100, ONE))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(add, range(40)))
    assert read(reservation_instances[0], "acme").held == {100: 40 * ONE}

    def within_50(holds: TenantHolds) -> TenantHolds | None:
        return holds.hold(100, ONE) if holds.held.get(100, Decimal(0)) + ONE <= 50 * ONE else None

    def bounded(n: int) -> bool:
        return reservation_instances[n % 2].update("globex" if n % 5 == 0 else "acme", within_50)

    with ThreadPoolExecutor(8) as pool:
        added = list(pool.map(bounded, range(60)))
    assert sum(added) == 10 + 12  # acme: 10 more fit under 50; globex: its 12 all fit
    assert read(reservation_instances[1], "acme").held == {100: 50 * ONE}
    assert read(reservation_instances[1], "globex").held == {100: 12 * ONE}


def test_a_change_may_be_called_again_but_writes_once(reservations: BudgetReservations) -> None:
    calls: list[TenantHolds] = []

    def change(holds: TenantHolds) -> TenantHolds:
        calls.append(holds)
        return holds.hold(100, ONE)

    reservations.update("acme", change)
    assert calls and read(reservations, "acme").held == {100: ONE}
