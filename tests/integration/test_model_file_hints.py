"""A missing model file names itself, its folder and the real cause: `make model` only for the folder it fills."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters.model_source import ModelSources, verify
from shared.domain.errors import ConfigError

FILES = {"genai_config.json": "0" * 64}


def missing_message(folder: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        verify(folder, FILES)
    return caught.value.message


def test_a_file_missing_from_a_deployers_folder_names_file_and_folder_not_make_model(tmp_path: Path) -> None:
    folder = tmp_path / "config" / "demo" / "tiny-chat"
    folder.mkdir(parents=True)
    message = missing_message(folder)
    assert f"model file missing: {folder / 'genai_config.json'}" in message
    assert f"the folder {folder} has no genai_config.json" in message
    assert "package must include it" in message
    assert "make model" not in message


def test_a_missing_folder_is_named_as_such(tmp_path: Path) -> None:
    message = missing_message(tmp_path / "nowhere")
    assert f"the folder {tmp_path / 'nowhere'} does not exist" in message
    assert "make model" not in message


def test_a_relative_folder_is_named_as_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config" / "demo" / "scoring").mkdir(parents=True)
    message = missing_message(Path("config/demo/scoring"))
    assert "model file missing: config/demo/scoring/genai_config.json" in message
    assert f"the folder {tmp_path / 'config' / 'demo' / 'scoring'} has no genai_config.json" in message


def test_only_the_default_embeddings_folder_suggests_make_model(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "all-MiniLM-L6-v2-int8"
    with pytest.raises(ConfigError) as caught:
        ModelSources(tmp_path / "cache", {}).fetch(str(folder), {"model.onnx": "0" * 64})
    assert f"model file missing: {folder / 'model.onnx'}" in caught.value.message
    assert "fetched by 'make model'" in caught.value.message
