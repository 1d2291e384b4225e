"""Scoring-script deployments through the queue trigger, on SQLite and the example script: init() with the model
folder in AZUREML_MODEL_DIR, run() per job, an exception as a failed job with its message, billing per request,
and a script that can't be imported refused when its deployment loads."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from shared.adapters.model_source import sha256_of
from shared.bootstrap import Inferq, bootstrap, set_app
from shared.domain.auth import Caller
from shared.domain.config import load_config
from shared.domain.errors import ConfigError, ScriptError
from shared.domain.jobs import JobStatus, utcnow
from shared.runtimes.engines.scoring_script import ScoringScript
from shared.runtimes.score import KIND as SCORE
from shared.settings import Settings
from tests.conftest import write_config
from tests.integration.test_worker import drain, pump, usage_bodies

ACME = Caller("acme")


pytestmark = pytest.mark.usefixtures("installed")  # the function objects call this test's service


def score(service: Inferq, body: dict) -> str:
    route = service.gateway.route("linear-scorer", None, SCORE)
    return service.gateway.submit(ACME, route, {"data": body}).job.id


def test_the_script_scores_jobs_and_each_is_billed_as_one_request(service: Inferq) -> None:
    ids = [score(service, {"data": [[1, 2, 3], [0, 0, 0]]}), score(service, {"data": [[2, 0, 1]]})]
    drain(pump(service))
    first, second = (service.gateway.get_job(ACME, job_id) for job_id in ids)
    assert first.status is JobStatus.SUCCEEDED and first.result == {"output": {"predictions": [4.75, 0.25]}}
    assert second.result == {"output": {"predictions": [3.25]}}
    (event,) = first.usage
    assert (event.meter, event.tokens, event.endpoint, event.deployment) == ("requests", 1, *["linear-scorer"] * 2)
    service.billing.ingest_usage(usage_bodies(service))
    report = service.billing.usage_report(ACME, None, None, "day")
    (line,) = report.items
    assert (line.deployment, line.meter, line.tokens, str(line.cost)) == ("linear-scorer", "requests", 2, "0.00002")
    assert (report.total_requests, report.total_tokens) == (2, 0)  # 2 requests at 0.01 per 1,000


def test_an_exception_in_run_fails_the_job_with_its_message_and_bills_nothing(service: Inferq) -> None:
    job_id = score(service, {"data": [[1, 2]]})
    drain(pump(service))
    job = service.gateway.get_job(ACME, job_id)
    assert job.status is JobStatus.FAILED and job.error is not None
    assert (job.error.code, job.error.message) == ("ScriptError", "ValueError: row 0 must hold 3 numbers")
    assert job.attempts == 1 and job.usage == () and usage_bodies(service) == []  # failed at once, not retried
    (outcome,) = service.stats.outcomes(utcnow() - timedelta(minutes=5), utcnow() + timedelta(minutes=5))
    assert (outcome.deployment, outcome.status, outcome.error) == ("linear-scorer", "failed", "ScriptError")


def test_init_finds_the_model_folder_in_azureml_model_dir_and_run_gets_the_body(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZUREML_MODEL_DIR", raising=False)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "answer.txt").write_text("42")
    (tmp_path / "helper.py").write_text("def double(x):\n    return 2 * x\n")  # a sibling module, as on Azure ML
    script = tmp_path / "probe.py"
    script.write_text(
        "import json, os, pathlib\nfrom helper import double\nseen = {}\n"
        "def init():\n    folder = os.environ['AZUREML_MODEL_DIR']\n"
        "    seen.update(folder=folder, answer=int(pathlib.Path(folder, 'answer.txt').read_text()))\n"
        "def run(raw_data):\n    return {**seen, 'doubled': double(json.loads(raw_data)['x'])}\n"
        "def fail():\n    raise KeyError('nope')\n"
    )
    probe = ScoringScript("probe", tmp_path, "probe.py", tmp_path / "model")
    assert probe.run('{"x": 21}') == {"folder": str((tmp_path / "model").resolve()), "answer": 42, "doubled": 42}
    assert "AZUREML_MODEL_DIR" not in os.environ  # set for init(), then restored
    with pytest.raises(ScriptError, match=r"^KeyError: 'x'$"):
        probe.run("{}")


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("import nonexistent_package_xyz\ndef init(): pass\ndef run(d): return d\n",
         "it can't be imported: ModuleNotFoundError: No module named 'nonexistent_package_xyz'"),
        ("def init(:\n", "it can't be imported: SyntaxError"),
        ("def init(): pass\n", r"it defines no run\(\)"),
        ("def init():\n    raise RuntimeError('weights missing')\ndef run(d): return d\n",
         "init\\(\\) failed: RuntimeError: weights missing"),
    ],
)  # fmt: skip
def test_a_script_that_cannot_be_loaded_fails_its_deployment_with_a_clear_error(
    tmp_path: Path, source: str, why: str
) -> None:
    script = tmp_path / "broken.py"
    script.write_text(source)
    with pytest.raises(ConfigError, match=f"^deployment broken: scoring script {script}: {why}"):
        ScoringScript("broken", tmp_path, "broken.py", tmp_path).load()


def test_a_job_for_a_deployment_whose_script_does_not_import_fails_at_once_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import nonexistent_package_xyz\n")
    pin = sha256_of(tmp_path / "broken.py")
    deployment = (
        f'[[deployments]]\nname = "broken"\nkind = "score"\nmodel_name = "b"\nscript = "broken.py"\n'
        f'[deployments.code]\nsource = "{tmp_path}"\nfiles = {{ "broken.py" = "{pin}" }}\n'
        f'[deployments.model]\nsource = "{tmp_path}"\nfiles = {{}}\n'
    )
    config = load_config(write_config(tmp_path / "broken.toml", after=deployment))
    service = bootstrap(Settings(_env_file=None, data_dir=tmp_path / "data", config=tmp_path / "x"), config=config)
    set_app(service)
    with pytest.raises(ConfigError, match="No module named 'nonexistent_package_xyz'"):
        service.registry.preload(service.config.deployment("broken"))  # the local host loads every deployment at start
    job_id = service.gateway.submit(ACME, service.gateway.route("broken", None, SCORE), {"data": {}}).job.id
    drain(pump(service))
    job = service.gateway.get_job(ACME, job_id)
    assert job.status is JobStatus.FAILED and job.error is not None and job.attempts == 1
    assert (
        job.error.code == "DeploymentUnavailable" and "No module named 'nonexistent_package_xyz'" in job.error.message
    )
