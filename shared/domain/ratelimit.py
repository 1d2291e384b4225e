"""Per-tenant rate limits, requests and tokens per minute: token buckets that refill continuously (as OpenAI's
limits do), so `remaining` grows back a little every second and a bucket is full again a minute after use.

Per HTTP instance, in memory: Flex Consumption scales the HTTP group out, so a tenant may get the configured
limit once per instance serving it. Tokens are charged at admission with the kind's estimate (an upper bound
of what the job may use) and settled to the job's real usage when it ends, sync or async
(`shared.application.admission`). A request larger than the whole token limit is let through when the bucket
is full (the bucket goes into debt) rather than refused forever.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable

from shared.domain.config import Tenant
from shared.domain.errors import RateLimited
from shared.domain.rates import Limit, RateState

WINDOW_S = 60.0


class _Bucket:
    def __init__(self, name: str, capacity: int, now: float) -> None:
        self.name, self.capacity = name, capacity
        self.level, self.updated = float(capacity), now

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.level = min(float(self.capacity), self.level + elapsed * self.capacity / WINDOW_S)
        self.updated = now

    def wait_s(self, amount: int) -> float:
        """How long until `amount` (at most the whole capacity) is available; 0 when it is now."""
        need = min(amount, self.capacity)
        if amount <= 0 or self.level >= need:
            return 0.0
        return (need - self.level) * WINDOW_S / self.capacity

    def limit(self) -> Limit:
        reset = (self.capacity - self.level) * WINDOW_S / self.capacity
        return Limit(self.name, self.capacity, max(0, math.floor(self.level)), max(0.0, reset))


class RateLimiter:
    def __init__(self, tenants: Iterable[Tenant], clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = {
            t.name: {"requests": t.requests_per_minute, "tokens": t.tokens_per_minute}
            for t in tenants
            if t.requests_per_minute or t.tokens_per_minute
        }
        self._clock = clock
        self._buckets: dict[str, list[_Bucket]] = {}
        self._lock = threading.Lock()

    def admit(self, tenant: str, tokens: int) -> RateState | None:
        """Charge one request and `tokens`; raises RateLimited (charging nothing) when either is over its limit.
        None when the tenant has no limits."""
        if tenant not in self._limits:
            return None
        with self._lock:
            buckets = self._refilled(tenant)
            cost = {"requests": 1, "tokens": tokens}
            waits = {b.name: b.wait_s(cost[b.name]) for b in buckets}
            if any(waits.values()):
                over = [name for name, wait in waits.items() if wait]
                limits = {b.name: b.capacity for b in buckets}
                state = RateState(tuple(b.limit() for b in buckets), retry_after_s=max(waits.values()))
                raise RateLimited(
                    f"Rate limit reached for tenant '{tenant}': "
                    + " and ".join(f"{limits[name]} {name} per minute" for name in over)
                    + f". Retry after {math.ceil(state.retry_after_s)} s.",
                    retry_after_s=max(1, math.ceil(state.retry_after_s)),
                    state=state,
                )
            for b in buckets:
                b.level -= cost[b.name]
            return RateState(tuple(b.limit() for b in buckets))

    def state(self, tenant: str) -> RateState | None:
        """The tenant's limits as they stand, charging nothing (what an idempotent repeat reports)."""
        if tenant not in self._limits:
            return None
        with self._lock:
            return RateState(tuple(b.limit() for b in self._refilled(tenant)))

    def settle(self, tenant: str, estimated: int, actual: int) -> None:
        """The job's real token usage replaces the estimate charged at the edge."""
        if tenant not in self._limits or estimated == actual:
            return
        with self._lock:
            for b in self._refilled(tenant):
                if b.name == "tokens":
                    b.level = min(float(b.capacity), b.level + estimated - actual)

    def refund(self, tenant: str, tokens: int, request: bool) -> None:
        """Give back what an admitted request was charged: its tokens (refused after admission, by its check),
        and its request too when it turned out to be a repeat of an existing job."""
        if tenant not in self._limits:
            return
        with self._lock:
            for b in self._refilled(tenant):
                back = tokens if b.name == "tokens" else int(request)
                b.level = min(float(b.capacity), b.level + back)

    def _refilled(self, tenant: str) -> list[_Bucket]:
        now = self._clock()
        buckets = self._buckets.get(tenant)
        if buckets is None:
            limits = self._limits[tenant]
            buckets = self._buckets[tenant] = [_Bucket(n, c, now) for n, c in limits.items() if c]
        for b in buckets:
            b.refill(now)
        return buckets
