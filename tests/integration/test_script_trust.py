"""Scoring scripts under abuse: a script is a file inside its declared code folder (no `..`, no absolute name,
no symlink out), it runs only as pinned by sha256, in a process of its own that sees none
of the host's secrets, and a script that raises, hangs or kills its process fails that job while the next works."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.adapters.model_source import sha256_of
from shared.bootstrap import Inferq, bootstrap, set_app
from shared.domain.auth import Caller
from shared.domain.config import load_config
from shared.domain.errors import ConfigError, ScriptError
from shared.domain.jobs import JobStatus
from shared.runtimes.engines.scoring_script import ScoringScript
from shared.runtimes.score import KIND as SCORE
from shared.settings import Settings
from tests.conftest import APPENDED, wait_for, write_config
from tests.integration.test_worker import drain, pump

ACME = Caller("acme")


@pytest.fixture(autouse=True)
def _uninstall() -> Iterator[None]:
    yield
    set_app(None)


SECRETS = {
    "INFERQ_API_KEY": "demo-secret-key",
    "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0;",
    "EventHubConnection": "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=secret",
    "AZURE_CLIENT_SECRET": "secret",
    "IDENTITY_HEADER": "secret",  # what a managed identity's token endpoint asks for
    "AWS_SECRET_ACCESS_KEY": "secret",
}
ENV_PROBE = (
    "import importlib.util, json, os, sys\nseen = {}\n"
    "def init():\n    seen['init'] = sorted(os.environ)\n"
    "def run(raw_data):\n"
    "    return {**seen, 'run': dict(os.environ), 'cwd': os.getcwd(),\n"
    "            'project_importable': importlib.util.find_spec('shared') is not None}\n"
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def table(source: Path | str, files: dict[str, str]) -> str:
    """A `[deployments.code]` or `[deployments.model]` body."""
    listed = ", ".join(f'"{name}" = "{digest}"' for name, digest in files.items())
    return f'source = "{source}"\nfiles = {{ {listed} }}'


ANY = "0" * 64


def scorer(script: str = "score.py", code: str = "", model: str = "") -> str:
    """A score deployment named `probe`; `code` and `model` are its tables' bodies."""
    model = model or 'source = "x"\nfiles = {}'
    return (
        f'[[deployments]]\nname = "probe"\nkind = "score"\nmodel_name = "p"\nscript = "{script}"\n'
        + (f"[deployments.code]\n{code}\n" if code else "")
        + f"[deployments.model]\n{model}\n"
    )


# --- paths: the script inside its code folder (every file: test_config_paths.py) ---------------------------------


@pytest.mark.parametrize(
    ("deployment", "message"),
    [
        (scorer("../evil/score.py", table(".", {"../evil/score.py": ANY})),
         rf"deployments\.{APPENDED}\.code\.files: .*'\.\./evil/score\.py' must be a relative path inside its folder"),
        (scorer("/tmp/evil.py", table(".", {"/tmp/evil.py": ANY})),
         rf"deployments\.{APPENDED}\.code\.files: .*'/tmp/evil\.py' must be a relative path inside its folder"),
    ],
)  # fmt: skip
def test_a_script_outside_its_code_folder_is_refused_by_the_config(
    tmp_path: Path, deployment: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path / "c.toml", after=deployment))


def test_a_symlinked_script_that_leaves_its_code_folder_is_refused_when_the_deployment_loads(tmp_path: Path) -> None:
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "score.py").write_text("def init(): pass\ndef run(d): return 'evil'\n")
    code = tmp_path / "code"
    code.mkdir()
    (code / "score.py").symlink_to(evil / "score.py")
    service = _service(tmp_path, scorer(code=table(code, {"score.py": sha256_of(evil / "score.py")})))
    with pytest.raises(ConfigError, match=f"outside its folder {code}"):
        service.registry.preload(service.config.deployment("probe"))


# --- pinning: a script runs only as its sha256 says -------------------------------------------------------------


@pytest.mark.parametrize(
    ("deployment", "message"),
    [
        (scorer("config/demo/scoring/score.py"), r"'config/demo/scoring/score\.py' must be one of `code\.files`"),
        (scorer("score.py", table(".", {"helper.py": ANY})),
         r"'score\.py' must be one of `code\.files` \(a file name in the folder `code\.source`, with its sha256\)"),
        (scorer("score.py", table(".", {"score.py": "not-a-sha"})),
         rf"deployments\.{APPENDED}\.code\.files\.score\.py"),
    ],
)  # fmt: skip
def test_an_unpinned_script_is_refused_by_the_config(tmp_path: Path, deployment: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path / "c.toml", after=deployment))


def test_a_script_whose_sha256_differs_from_its_pin_is_refused_and_never_runs(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    marker = tmp_path / "ran"
    (code / "score.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef init(): pass\ndef run(d): return d\n")
    wrong = sha("what was reviewed")
    service = _service(tmp_path, scorer(code=table(code, {"score.py": wrong})))
    actual = sha256_of(code / "score.py")
    with pytest.raises(ConfigError, match=f"code file {code}/score.py has sha256 {actual}, expected {wrong}: refusing"):
        service.registry.preload(service.config.deployment("probe"))
    job_id = service.gateway.submit(ACME, service.gateway.route("probe", None, SCORE), {"data": {}}).job.id
    drain(pump(service))
    job = service.gateway.get_job(ACME, job_id)
    assert job.status is JobStatus.FAILED and job.error is not None and job.error.code == "DeploymentUnavailable"
    assert "expected " + wrong in job.error.message
    assert not marker.exists()  # not a line of it ran


# --- environment: the script's process sees none of the host's secrets ------------------------------------------


def test_a_script_sees_none_of_the_hosts_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    code = tmp_path / "code"
    code.mkdir()
    (code / "score.py").write_text(ENV_PROBE)
    model = tmp_path / "model"
    model.mkdir()
    service = _service(
        tmp_path,
        scorer(
            code=table(code, {"score.py": sha(ENV_PROBE)}),
            model=table(model, {}),
        ),
    )
    job_id = service.gateway.submit(ACME, service.gateway.route("probe", None, SCORE), {"data": {}}).job.id
    drain(pump(service))
    job = service.gateway.get_job(ACME, job_id)
    assert job.status is JobStatus.SUCCEEDED and job.result is not None, job.error
    seen = job.result["output"]
    assert seen["run"]["AZUREML_MODEL_DIR"] == str(model.resolve())  # the one thing the contract gives it
    allowed = {"AZUREML_MODEL_DIR", "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"}
    assert set(seen["init"]) <= allowed and set(seen["run"]) <= allowed, seen
    assert not set(SECRETS.values()) & set(seen["run"].values())
    assert seen["cwd"] == str(code.resolve()) and seen["project_importable"] is False
    assert os.environ["INFERQ_API_KEY"] == SECRETS["INFERQ_API_KEY"]  # the host's own, untouched


# --- faults: raise, hang, die; the next call works ---------------------------------------------------------------

FAULTY = (
    "import json, os, signal, sys, time\n"
    "def init(): print('init writes to stdout')\n"
    "def run(raw_data):\n"
    "    how = json.loads(raw_data)['how']\n"
    "    print('run writes to stdout too')\n"
    "    if how == 'raise': raise ValueError('bad row')\n"
    "    if how == 'hang': time.sleep(3600)\n"
    "    if how == 'exit': os._exit(3)\n"
    "    if how == 'kill': os.kill(os.getpid(), signal.SIGKILL)\n"
    "    if how == 'sys.exit': sys.exit('bye')\n"
    "    if how == 'nan': return float('nan')\n"
    "    return {'pid': os.getpid()}\n"
)


@pytest.mark.parametrize(
    ("how", "error"),
    [
        ("raise", r"^ValueError: bad row$"),
        ("nan", r"^run\(\) returned a value that is not JSON: Out of range float values are not JSON compliant"),
        ("hang", r"^run\(\) did not return within 0\.5 s: its process was stopped \(the next job starts a new one\)$"),
        ("exit", r"^the script's process exited \(code 3\) during run\(\) \(the next job starts a new one\)$"),
        ("kill", r"^the script's process exited \(code -9\) during run\(\)"),
        ("sys.exit", r"^the script's process exited \(code 1\) during run\(\)"),
    ],
)
def test_a_script_that_raises_hangs_or_dies_fails_that_call_and_the_next_one_works(
    tmp_path: Path, how: str, error: str
) -> None:
    (tmp_path / "score.py").write_text(FAULTY)
    script = ScoringScript("faulty", tmp_path, "score.py", tmp_path, run_timeout_s=0.5)
    try:
        first = script.run('{"how": "ok"}')["pid"]
        with pytest.raises(ScriptError, match=error):
            script.run(f'{{"how": "{how}"}}')
        after = script.run('{"how": "ok"}')["pid"]
        assert (after == first) is (how in ("raise", "nan"))  # a new process only when the old one is gone
    finally:
        script.close()


def test_a_stopped_script_takes_the_processes_it_started_with_it(tmp_path: Path) -> None:
    started = tmp_path / "started.pid"
    (tmp_path / "score.py").write_text(
        "import pathlib, subprocess, time\ndef init(): pass\ndef run(d):\n"
        f"    pathlib.Path({str(started)!r}).write_text(str(subprocess.Popen(['sleep', '3600']).pid))\n"
        "    time.sleep(3600)\n"
    )
    script = ScoringScript("spawner", tmp_path, "score.py", tmp_path, run_timeout_s=0.5)
    with pytest.raises(ScriptError, match="did not return within 0.5 s"):
        script.run("{}")
    stat = Path(f"/proc/{started.read_text()}/stat")
    wait_for(lambda: not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")  # gone, or dead


def test_an_init_that_hangs_fails_the_deployment_load_with_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "score.py").write_text("import time\ndef init(): time.sleep(3600)\ndef run(d): return d\n")
    script = ScoringScript("slow", tmp_path, "score.py", tmp_path, init_timeout_s=0.5)
    with pytest.raises(ConfigError, match=r"^deployment slow: scoring script .*score\.py: init\(\) took over 0\.5 s"):
        script.load()


def test_a_failing_job_leaves_the_deployment_serving_the_next(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "score.py").write_text(FAULTY)
    service = _service(
        tmp_path,
        scorer(code=table(code, {"score.py": sha(FAULTY)})),
        script_run_timeout_s=0.5,
    )
    route = service.gateway.route("probe", None, SCORE)
    ids = [service.gateway.submit(ACME, route, {"data": {"how": how}}).job.id for how in ("kill", "hang", "ok")]
    drain(pump(service))
    killed, hung, ok = (service.gateway.get_job(ACME, job_id) for job_id in ids)
    assert killed.error is not None and "exited (code -9)" in killed.error.message and killed.attempts == 1
    assert hung.error is not None and "did not return within 0.5 s" in hung.error.message and hung.attempts == 1
    assert (killed.error.code, hung.error.code) == ("ScriptError", "ScriptError")
    assert ok.status is JobStatus.SUCCEEDED


def _service(tmp_path: Path, deployment: str, **settings: float) -> Inferq:
    config = load_config(write_config(tmp_path / "probe.toml", after=deployment))
    service = bootstrap(
        Settings(_env_file=None, data_dir=tmp_path / "data", config=tmp_path / "x", **settings),  # type: ignore[arg-type]
        config=config,
    )
    set_app(service)
    return service
