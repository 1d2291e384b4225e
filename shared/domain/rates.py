"""A tenant's rate limits as a response reports them (the `x-ratelimit-*` headers, a 429's `Retry-After`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    name: str  # "requests" or "tokens"
    limit: int  # per minute
    remaining: int
    reset_s: float  # until the bucket is full again


@dataclass(frozen=True)
class RateState:
    """A tenant's limits after a request was admitted (or refused)."""

    limits: tuple[Limit, ...]
    retry_after_s: float = 0.0
