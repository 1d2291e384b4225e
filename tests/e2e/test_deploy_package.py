"""The deployment package boots: built exactly by the `.funcignore` rules (tests/deploy_package.py) into a temporary
folder, with `requirements.txt` alone installed into a fresh virtualenv, the host started from that folder with
the shipped config on the Azure backend (Azurite) serves an embeddings, a chat and a `/score` request. A package
missing a file the config needs does not start, and says which file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import venv
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.adapters.azure.connection import azurite_connection_string
from shared.domain.config import load_config
from tests.azurite import Azurite
from tests.conftest import ROOT, RunningHost, free_port, stop_host
from tests.deploy_package import FuncIgnore, build_package

pytestmark = pytest.mark.e2e

KEY = "package-demo-key"
# What the package's host must not see of this checkout: its virtualenv, its sources on the import path.
FOREIGN_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")


def host_module() -> str:
    """The module `make run` starts (read from the Makefile, so a rename there is followed here)."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^run:.*\n((?:\t.*\n?)+)", makefile, re.M)
    assert recipe, "the Makefile has no `run` target"
    module = re.search(r"python\s+-m\s+([\w.]+)", recipe.group(1))
    assert module, f"`make run` starts no Python module:\n{recipe.group(1)}"
    return module.group(1)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("package") / "wwwroot"
    build_package(ROOT, folder)
    return folder


@pytest.fixture(scope="module")
def package_python(tmp_path_factory: pytest.TempPathFactory, package: Path) -> Path:
    """A fresh virtualenv with the package's requirements.txt and nothing else (pip's own index settings)."""
    env_dir = tmp_path_factory.mktemp("package-venv")
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", "requirements.txt"],
        cwd=package,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert result.returncode == 0, f"pip install -r requirements.txt failed:\n{result.stdout}\n{result.stderr}"
    return python


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV and not k.startswith("INFERQ_")}
    return {**env, **extra}


def start_package_host(
    package: Path, python: Path, connection: str, tmp_path: Path, timeout: float = 120
) -> RunningHost | tuple[int, str]:
    """The host started from the package folder as Azure would run it (the Bicep's settings: Azure backend, the
    config inside the package, a writable models cache outside it); a RunningHost once /health answers, or
    (exit code, output) if it stopped first."""
    port = free_port()
    log_path = tmp_path / "host.log"
    env = clean_env(
        INFERQ_BACKEND="azure",
        INFERQ_CONFIG="config/inferq.toml",
        INFERQ_DATA_DIR=str(tmp_path / "data"),
        INFERQ_MODELS_DIR=str(tmp_path / "models-cache"),
        INFERQ_API_KEY=KEY,
        AzureWebJobsStorage=connection,
        EventHubConnection="",
        PORT=str(port),
        PYTHONDONTWRITEBYTECODE="1",  # the package is read-only on Flex Consumption
    )
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(python), "-m", host_module()], cwd=package, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return process.returncode, log_path.read_text(errors="replace")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return RunningHost(url, process, tmp_path / "data", log_path)
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    process.wait()
    raise AssertionError(f"the packaged host did not start in {timeout} s:\n{log_path.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def package_host(
    package: Path, package_python: Path, azurite: Azurite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHost]:
    started = start_package_host(
        package, package_python, azurite.fresh_connection_string(), tmp_path_factory.mktemp("package-host")
    )
    assert isinstance(started, RunningHost), f"the packaged host stopped with {started[0]}:\n{started[1]}"
    yield started
    stop_host(started)


def test_the_package_is_what_funcignore_leaves_and_holds_everything_the_config_names(package: Path) -> None:
    top = {p.name for p in package.iterdir()}
    assert {"function_app.py", "host.json", "requirements.txt", "shared", "functions", "config", "models"} <= top
    assert not top & {"tests", "infra", "scripts", "Makefile", ".venv", "node_modules", "data", ".funcignore"}
    assert not list(package.rglob("__pycache__"))
    config = load_config(package / "config" / "inferq.toml")
    for deployment in config.deployments:
        source = package / deployment.model.source
        assert all((source / name).is_file() for name in deployment.model.files), deployment.name
        code = deployment.code
        assert code is None or all((package / code.source / name).is_file() for name in code.files), deployment.name


def test_funcignore_keeps_the_models_and_demo_files_but_not_the_remote_model_cache() -> None:
    rules = FuncIgnore.load(ROOT)
    for kept in ("config/demo/tiny-chat/model.onnx", "config/demo/scoring/score.py", "models/m/model.onnx"):
        assert rules.keeps(kept), kept
    for dropped in (
        "models/.cache/0123/model.onnx",
        "models/.downloads/x.whl",
        "tests/conftest.py",
        "data/inferq.sqlite3",
    ):
        assert not rules.keeps(dropped), dropped


def test_the_package_serves_embeddings_chat_and_score_on_azure_storage(package_host: RunningHost) -> None:
    with package_host.client(KEY, timeout=120) as c:
        embeddings = c.post("/embeddings", json={"model": "all-MiniLM-L6-v2", "input": ["hello from the package"]})
        chat = c.post(
            "/chat/completions",
            json={"model": "tiny-random-chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8},
        )
        score = c.post("/score", json={"model": "linear-scorer", "data": [[1, 2, 3]]})
    log = package_host.log()
    assert embeddings.status_code == 200, embeddings.text + log
    assert len(embeddings.json()["data"][0]["embedding"]) == 384
    assert chat.status_code == 200, chat.text + log
    assert chat.json()["usage"]["completion_tokens"] > 0
    assert score.status_code == 200, score.text + log
    assert len(score.json()["predictions"]) == 1
    assert "no Event Hubs connection" in log  # the Azure backend, with usage kept in the embedded log


@pytest.mark.parametrize(
    ("missing", "says"),
    [
        ("config/demo/tiny-chat/genai_config.json", "model file missing: config/demo/tiny-chat/genai_config.json"),
        ("config/demo/scoring/score.py", "code file missing: config/demo/scoring/score.py"),
    ],
)
def test_a_package_without_a_file_the_config_needs_does_not_start_and_names_it(
    package: Path, package_python: Path, tmp_path: Path, missing: str, says: str
) -> None:
    broken = tmp_path / "wwwroot"
    shutil.copytree(package, broken)
    (broken / missing).unlink()
    nowhere = azurite_connection_string(free_port(), free_port(), free_port())  # it must stop before any storage
    started = start_package_host(broken, package_python, nowhere, tmp_path)
    if isinstance(started, RunningHost):
        stop_host(started)
        pytest.fail(f"the host started without {missing}")
    code, output = started
    assert code != 0
    assert says in output, output
    assert "make model" not in output
    assert "Traceback" not in output, output  # a message, not a crash


def test_the_host_module_is_read_from_the_makefile() -> None:
    module = ROOT / Path(*host_module().split("."))
    assert module.with_suffix(".py").is_file() or (module / "__main__.py").is_file(), module
