"""Admission: a request's estimate is reserved against its tenant's budget and token rate before any work on its
body, and settled to the job's real usage when the job ends, whether a response waited for it or not.

A job's reservation (a `Hold`) is settled by whoever sees the job end first: the response that waited for it,
or the tenant's next admission, which reads the held jobs that ended meanwhile (from this process's job signals,
else one batched store read at most every SETTLE_READ_S, and always before refusing): the worker may run on
another instance, and the job store is what every instance shares.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from shared.application.budgets import BudgetGuard
from shared.domain import billing
from shared.domain.config import Deployment
from shared.domain.errors import QuotaExceeded, RateLimited, TransientError
from shared.domain.jobs import Job
from shared.domain.ports import JobSignals, JobStore
from shared.domain.ratelimit import RateLimiter
from shared.domain.rates import RateState
from shared.domain.usage_report import unit_price
from shared.schemas.usage import Meter

SETTLE_READ_S = 1.0  # a tenant's held jobs are read from the store at most this often...
FORCED_READ_S = 0.1  # ...or this often before refusing it (a refused client can't make reads cost more)
READ_BATCH = 100


@dataclass(frozen=True)
class Hold:
    """What one admitted request reserved: `tokens` from the token rate, `cost` from the budget."""

    tenant: str
    tokens: int
    cost: Decimal
    rate: RateState | None  # the tenant's rate limits after the admission
    expires: int | None = None  # when its budget hold lapses (epoch s); None: its tenant has no budget


def cost_bound(deployment: Deployment, tokens: int) -> Decimal:
    """The most `tokens` (and one request) can cost on the deployment: every token at its dearest token meter."""
    token_price = max((p for m, p in deployment.prices.items() if m.counts_tokens), default=Decimal(0))
    return billing.total(
        [billing.cost(tokens, token_price), billing.cost(1, deployment.prices.get(Meter.REQUESTS, Decimal(0)))]
    )


class Admission:
    def __init__(
        self,
        budgets: BudgetGuard,
        rates: RateLimiter,
        store: JobStore,
        signals: JobSignals,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budgets, self.rates, self.store, self.signals = budgets, rates, store, signals
        self._monotonic = monotonic
        self._held: dict[str, dict[str, Hold]] = {}  # tenant → job id → its hold
        self._read_at: dict[str, float] = {}  # tenant → when its held jobs were last read
        self._lock = threading.Lock()

    def admit(self, tenant: str, deployment: Deployment, tokens: int) -> Hold:
        """Reserve `tokens` and their cost bound, or raise QuotaExceeded / RateLimited reserving nothing."""
        self.settle_ended(tenant)
        try:
            return self._admit(tenant, deployment, tokens)
        except (QuotaExceeded, RateLimited):
            if not self.settle_ended(tenant, force=True):
                raise  # no held job of the tenant ended meanwhile: the refusal stands
            return self._admit(tenant, deployment, tokens)

    def bind(self, job_id: str, hold: Hold) -> None:
        """The admitted request's job: its hold is settled when the job ends."""
        if self._tracked(hold):
            with self._lock:
                self._held.setdefault(hold.tenant, {})[job_id] = hold

    def release(self, hold: Hold, repeat: bool = False) -> None:
        """An admitted request made no job: refused by its check (its request still counts against the request
        rate), or a repeat of an existing job (nothing counts)."""
        self.budgets.release(hold.tenant, hold.cost, expires=hold.expires)
        self.rates.refund(hold.tenant, hold.tokens, request=repeat)

    def settle(self, job: Job) -> bool:
        """A job ended: its real usage replaces its hold. False when it has none (already settled, or not
        admitted here)."""
        if not job.status.terminal:
            return False
        with self._lock:
            hold = self._held.get(job.tenant, {}).pop(job.id, None)
        if hold is None:
            return False
        events = [e for e in job.usage if not e.mirrored]
        tokens = sum(e.tokens for e in events if e.meter.counts_tokens)
        prices = self.budgets.config
        cost = billing.total([billing.cost(e.tokens, unit_price(prices, e.deployment, e.meter)) for e in events])
        self.budgets.release(job.tenant, hold.cost, cost, hold.expires)
        self.rates.settle(job.tenant, hold.tokens, tokens)
        return True

    def settle_ended(self, tenant: str, force: bool = False) -> bool:
        """Settle the tenant's held jobs that ended: those this process saw end, and (at most every
        SETTLE_READ_S, or when `force`d) those the store shows ended. Whether any was settled."""
        with self._lock:
            held = list(self._held.get(tenant, {}))
        if not held:
            return False
        settled = False
        unseen = []
        for job_id in held:
            ended = self.signals.ended(job_id)
            if ended is not None:
                settled |= self.settle(ended)
            else:
                unseen.append(job_id)
        since = self._monotonic() - self._read_at.get(tenant, -math.inf)
        if unseen and since >= (FORCED_READ_S if force else SETTLE_READ_S):
            self._read_at[tenant] = self._monotonic()
            for start in range(0, len(unseen), READ_BATCH):
                batch = unseen[start : start + READ_BATCH]
                try:
                    jobs = self.store.get_many(batch)
                except TransientError:
                    break  # the holds stay: a later admission reads them again
                for job in jobs:
                    settled |= self.settle(job)
                for gone in set(batch) - {job.id for job in jobs}:  # deleted meanwhile: nothing more to bill
                    settled |= self._drop(tenant, gone)
        return settled

    def _drop(self, tenant: str, job_id: str) -> bool:
        with self._lock:
            hold = self._held.get(tenant, {}).pop(job_id, None)
        if hold is not None:
            self.budgets.release(tenant, hold.cost, expires=hold.expires)
            self.rates.settle(tenant, hold.tokens, 0)
        return hold is not None

    def _admit(self, tenant: str, deployment: Deployment, tokens: int) -> Hold:
        cost = cost_bound(deployment, tokens)
        expires = self.budgets.reserve(tenant, cost)
        try:
            rate = self.rates.admit(tenant, tokens)
        except RateLimited:
            self.budgets.release(tenant, cost, expires=expires)
            raise
        return Hold(tenant, tokens, cost, rate, expires)

    def _tracked(self, hold: Hold) -> bool:
        return self.budgets.budgeted(hold.tenant) or hold.rate is not None
