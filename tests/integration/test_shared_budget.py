"""A budget holds across instances: two apps (two `bootstrap()` calls, as two Functions instances or two local
hosts) on one SQLite data dir, or on one storage account (Azurite), reserve in the one shared count. Bursts on
both at once admit no more than the budget's worth of estimates (each instance used to admit that much on its
own); a job settled on one frees budget on the other; and the holds of an instance that died lapse
INFERQ_BUDGET_HOLD_S after it reserved them. Two local processes on one data dir hold it too."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.application.gateway import Submitted
from shared.bootstrap import Inferq, bootstrap
from shared.domain.auth import hash_key
from shared.domain.config import load_config
from shared.domain.errors import QuotaExceeded
from shared.settings import Settings
from tests.azurite import Azurite
from tests.conftest import ROOT, wait_for, write_config

KEY = "thrifty-key"
TENANTS = f'[[tenants]]\nname = "thrifty"\nkey_sha256 = ["{hash_key(KEY)}"]\nmonthly_budget = "0.00001"\n\n'
FIT = 14  # "hello" reserves 7 tokens (5 bytes and 2 special tokens) at 0.0001 per 1,000: 14 fit in 0.00001


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "azure"])
def instances(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Clock | None], Inferq]:
    """Builds another instance on the same shared storage (each with its own data dir on Azure)."""
    config = load_config(write_config(tmp_path / "budget.toml", extra=TENANTS))
    env: dict[str, str] = {}
    if request.param == "azure":
        azurite: Azurite = request.getfixturevalue("azurite")
        env = {"backend": "azure", "AzureWebJobsStorage": azurite.fresh_connection_string()}
    built: list[Inferq] = []

    def instance(clock: Clock | None = None) -> Inferq:
        data = tmp_path / ("data" if request.param == "sqlite" else f"data-{len(built)}")
        settings = Settings(_env_file=None, data_dir=data, config=tmp_path / "unused", **env)  # type: ignore[arg-type]
        app = bootstrap(settings, config=config, **({"clock": clock} if clock else {}))
        built.append(app)
        return app

    return instance


def send(app: Inferq) -> Submitted:
    caller = app.gateway.authenticate(KEY)
    return app.gateway.submit(caller, app.config.deployment("all-MiniLM-L6-v2"), {"input": "hello"})


def burst(apps: list[Inferq], n: int) -> list[Submitted]:
    """`n` requests at once, from 16 threads, spread over the instances; the ones admitted."""

    def one(i: int) -> Submitted | None:
        try:
            return send(apps[i % len(apps)])
        except QuotaExceeded:
            return None

    with ThreadPoolExecutor(16) as pool:
        return [s for s in pool.map(one, range(n)) if s is not None]


def test_two_instances_admitting_at_once_hold_one_budget(instances: Callable[[Clock | None], Inferq]) -> None:
    first, second = instances(None), instances(None)
    admitted = burst([first, second], 120)
    assert len(admitted) == FIT  # (each instance admitted 14 on its own: 28)
    assert {s.job.id for s in admitted} == {s.job.id for s in admitted if first.store.get(s.job.id)}


def test_a_job_settled_on_one_instance_frees_its_budget_on_the_other(
    instances: Callable[[Clock | None], Inferq],
) -> None:
    first, second = instances(None), instances(None)
    jobs = [send(first).job for _ in range(FIT)]
    with pytest.raises(QuotaExceeded):
        send(second)
    caller = first.gateway.authenticate(KEY)
    for job in jobs:
        first.gateway.cancel(caller, job.id)  # they end costing nothing
    send(first)  # its admission settles its ended jobs, in the shared count too
    assert len(burst([second], 40)) == FIT - 1


def test_the_holds_of_an_instance_that_died_lapse_after_the_hold_time(
    instances: Callable[[Clock | None], Inferq],
) -> None:
    clock = Clock()
    dead = instances(clock)
    for _ in range(FIT):
        send(dead)  # then it dies: nobody settles these
    survivor = instances(clock)
    with pytest.raises(QuotaExceeded):
        send(survivor)
    clock.now += timedelta(seconds=survivor.settings.budget_hold_s - 1)
    with pytest.raises(QuotaExceeded):
        send(survivor)
    clock.now += timedelta(seconds=11)  # past the hold time, rounded up to a 10 s bucket
    assert len(burst([survivor], 40)) == FIT


BURST = """
import sys, time
from pathlib import Path
from shared.bootstrap import bootstrap
from shared.domain.config import load_config
from shared.settings import Settings
from tests.integration.test_shared_budget import burst
tmp = Path(sys.argv[1])
app = bootstrap(Settings(_env_file=None, data_dir=tmp / "data", config=tmp / "budget.toml"))
(tmp / sys.argv[2]).touch()
while not (tmp / "go").exists():
    time.sleep(0.01)
print(len(burst([app], 60)))
"""


def test_two_local_processes_on_one_data_dir_hold_one_budget(tmp_path: Path) -> None:
    write_config(tmp_path / "budget.toml", extra=TENANTS)
    processes = [
        subprocess.Popen([sys.executable, "-c", BURST, str(tmp_path), f"ready-{n}"], cwd=ROOT, stdout=subprocess.PIPE)
        for n in range(2)
    ]
    try:
        wait_for(lambda: all((tmp_path / f"ready-{n}").exists() for n in range(2)), timeout=60)
        (tmp_path / "go").touch()  # both burst at once
        admitted = [int(p.communicate(timeout=120)[0]) for p in processes]
    finally:
        for p in processes:
            p.kill()
    assert sum(admitted) == FIT, admitted  # (each process admitted 14 on its own: 28)
