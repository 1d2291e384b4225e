"""Checks that need the real chat model (SmolLM2-135M-Instruct, `make chat-model`): `make test-models` builds it
first, then runs them; `make test` leaves them out (each module is marked `models`). Without the model they fail,
never skip."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import ROOT, RunningHost, start_host, stop_host

SMOLLM2_DIR = ROOT / "models" / "smollm2-135m-instruct-int4"


@pytest.fixture(scope="session")
def smollm2_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    """The real local host on the example config, with the real chat model built."""
    if not (SMOLLM2_DIR / "manifest.json").is_file():
        pytest.fail(f"{SMOLLM2_DIR} is not built: run `make chat-model` (or `make test-models`, which builds it)")
    running = start_host(tmp_path_factory.mktemp("smollm2"))
    yield running
    stop_host(running)
