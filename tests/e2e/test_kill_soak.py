"""The kill -9 soak, small enough for `make test` (`make soak` runs the full one: tests/e2e/soak.py): async jobs
with Idempotency-Keys from 8 clients, the host killed at random and once inside the create→send window, every
request sent again; every job ends once, none is left queued, and /usage bills exactly what the jobs reported."""

from pathlib import Path

import pytest

from tests.e2e.soak import soak

pytestmark = pytest.mark.e2e


def test_every_job_ends_once_and_is_billed_to_the_token_through_kills(tmp_path: Path) -> None:
    figures = soak(tmp_path, jobs=200, clients=8, kills=3)
    assert figures.problems() == [], figures.table()
    assert figures.window_kills == 1 and figures.random_kills == 3
    # The window kill landed inside the one commit that records a job with its message (SQLite): it left no job
    # without its message, so nothing kept unsent (the store-then-send path left one here: see test_enqueue_recovery).
    assert figures.unsent_at_kills[1] == 0
