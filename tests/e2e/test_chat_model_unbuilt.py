"""The example config's real chat model (`smollm2-135m-instruct`, built by `make chat-model`) when it is not built:
the host starts anyway and serves the rest, its requests get a 503 naming `make chat-model` (no job, nothing billed),
and /models marks it unavailable."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, RunningHost, start_host, stop_host, write_config

pytestmark = pytest.mark.e2e
MODEL = "smollm2-135m-instruct"
BUILT = f'source = "{ROOT.as_posix()}/models/smollm2-135m-instruct-int4"'


@pytest.fixture(scope="module")
def unbuilt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    """The host on the example config, the chat model's folder pointing where nothing was built (whether or not
    this machine built it in models/)."""
    tmp = tmp_path_factory.mktemp("unbuilt")
    config = write_config(tmp / "host.toml")
    text = config.read_text()
    assert BUILT in text
    config.write_text(text.replace(BUILT, f'source = "{(tmp / "models" / "smollm2-135m-instruct-int4").as_posix()}"'))
    running = start_host(tmp, config=config)
    yield running
    stop_host(running)


def test_the_host_starts_and_says_which_model_to_build(unbuilt: RunningHost) -> None:
    with unbuilt.client() as c:
        ok = c.post(
            "/chat/completions",
            json={"model": "tiny-random-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        )
    assert ok.status_code == 200, ok.text
    assert "make chat-model" in unbuilt.log() and MODEL in unbuilt.log()


@pytest.mark.parametrize("stream", [False, True])
def test_its_requests_get_a_503_naming_make_chat_model_and_no_job(unbuilt: RunningHost, stream: bool) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "stream": stream,
    }
    with unbuilt.client() as c:
        r = c.post("/chat/completions", json=body)
        assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert error["code"] == "DeploymentUnavailable"
        assert "make chat-model" in error["message"] and MODEL in error["message"]
        assert "x-inferq-job-id" not in r.headers
        usage = c.get("/usage", params={"from": "2000-01-01", "granularity": "month"}).json()["items"]
    assert not [item for item in usage if item["deployment"] == MODEL]


def test_models_marks_it_unavailable_and_the_others_available(unbuilt: RunningHost) -> None:
    with unbuilt.client() as c:
        models = {m["id"]: m for m in c.get("/models").json()["data"]}
    assert models[MODEL]["available"] is False and "make chat-model" in models[MODEL]["unavailable_reason"]
    assert models["tiny-random-chat"]["available"] is True and "unavailable_reason" not in models["tiny-random-chat"]
    assert models["all-MiniLM-L6-v2"]["available"] is True


def test_once_built_it_is_served_without_a_restart(unbuilt: RunningHost, tmp_path: Path) -> None:
    """A folder pinned by a manifest is read again until its model loads: here the tiny model's files, with a
    manifest, copied to where the host looks."""
    folder = Path(unbuilt.data_dir).parent / "models" / "smollm2-135m-instruct-int4"
    try:
        write_built_folder(folder)
        with unbuilt.client() as c:
            r = c.post(
                "/chat/completions",
                json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
            )
            assert r.status_code == 200, r.text
            assert r.json()["usage"]["completion_tokens"] == 3
            assert {m["id"]: m for m in c.get("/models").json()["data"]}[MODEL]["available"] is True
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_built_folder(folder: Path) -> None:
    import json

    from shared.adapters.model_source import sha256_of

    shutil.copytree(ROOT / "config" / "demo" / "tiny-chat", folder)
    (folder / "README.md").unlink(missing_ok=True)
    files = {p.name: sha256_of(p) for p in sorted(folder.iterdir())}
    (folder / "manifest.json").write_text(json.dumps({"files": files}))
