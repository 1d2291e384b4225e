"""A tenant's shared budget count: what every instance reserved for its jobs in flight (`held`), and the real
cost of jobs that ended but may not be in the ledger yet (`spent`). Admission adds to it only if the ledger's
figure plus this count plus the new estimate fits the budget, in one atomic step of the `BudgetReservations`
port, so instances can't all take the same remainder.

Kept as sums per BUCKET_S of time (a hold by when it expires, a cost by when it was settled), not one entry per
request: its size is bounded by how long entries live, whatever the budget, so one Table entity holds it. A hold
lapses when it expires (its instance may have died before settling it); a settled cost once any ledger figure in
use must include it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from shared.domain import billing

BUCKET_S = 10  # rounding up to it: a hold lives, and a settled cost counts, up to this much longer (never shorter)


def bucket(moment: datetime) -> int:
    """The end of `moment`'s bucket, in epoch seconds."""
    return math.ceil(moment.timestamp() / BUCKET_S) * BUCKET_S


def _moment(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True)
class TenantHolds:
    held: Mapping[int, Decimal] = field(default_factory=dict)  # expires (epoch s) → estimates of jobs in flight
    spent: Mapping[int, Decimal] = field(default_factory=dict)  # settled (epoch s) → real costs of ended jobs

    def pruned(self, now: datetime, keep_spent_s: float) -> TenantHolds:
        """Without the holds expired at `now` and the costs settled more than `keep_spent_s` ago."""
        t = now.timestamp()
        return TenantHolds(
            {at: c for at, c in self.held.items() if at > t},
            {at: c for at, c in self.spent.items() if at + keep_spent_s > t},
        )

    def counted(self, now: datetime, billed_before: datetime) -> Decimal:
        """What counts against this month's budget at `now`, beside a ledger figure that includes every cost
        settled before `billed_before`: unexpired holds, and this month's costs settled since."""
        t, month = now.timestamp(), billing.month_start(now)
        held = [c for at, c in self.held.items() if at > t]
        spent = [
            c
            for at, c in self.spent.items()
            if at > billed_before.timestamp() and billing.month_start(_moment(at)) == month
        ]
        return billing.total([*held, *spent])

    def hold(self, expires: int, cost: Decimal) -> TenantHolds:
        return TenantHolds(_add(self.held, expires, cost), self.spent)

    def settle(self, expires: int, reserved: Decimal, at: int, actual: Decimal) -> TenantHolds:
        """A hold ends: its estimate is given back (if it has not lapsed), its job's real cost counts from `at`."""
        return TenantHolds(_add(self.held, expires, -reserved), _add(self.spent, at, actual))

    def to_json(self) -> tuple[str, str]:
        return _dump(self.held), _dump(self.spent)

    @classmethod
    def from_json(cls, held: str, spent: str) -> TenantHolds:
        return cls(_load(held), _load(spent))


def _add(sums: Mapping[int, Decimal], at: int, cost: Decimal) -> dict[int, Decimal]:
    out = dict(sums)
    if at not in out and cost <= 0:
        return out  # a lapsed hold: nothing left to give back
    total = out.get(at, Decimal(0)) + cost
    if total > 0:
        out[at] = total
    else:
        out.pop(at, None)
    return out


def _dump(sums: Mapping[int, Decimal]) -> str:
    return json.dumps({str(at): str(c) for at, c in sorted(sums.items())}, separators=(",", ":"))


def _load(text: str) -> dict[int, Decimal]:
    return {int(at): Decimal(c) for at, c in json.loads(text or "{}").items()}
