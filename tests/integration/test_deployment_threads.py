"""A deployment may set its own ONNX Runtime thread count: the tiny demo chat model runs on one thread while the
setting (the cores) applies to the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters.model_source import ModelSources
from shared.domain.config import AppConfig, load_config
from shared.runtimes.registry import RuntimeRegistry
from shared.settings import Settings
from tests.conftest import write_config


def registry(tmp_path: Path, threads: int) -> tuple[AppConfig, RuntimeRegistry]:
    config = load_config(write_config(tmp_path / "inferq.toml"))
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", intra_op_threads=threads, batch_workers=1)
    return config, RuntimeRegistry(settings, ModelSources.from_settings(settings))


def test_a_deployment_runs_on_its_own_thread_count_and_the_others_on_the_setting(tmp_path: Path) -> None:
    config, runtimes = registry(tmp_path, threads=2)
    tiny = runtimes.runtime(config.deployment("tiny-random-chat"))
    assert tiny.intra_op_threads == 1  # the example config's `intra_op_threads = 1`
    embeddings = runtimes.runtime(config.deployment("all-MiniLM-L6-v2"))
    assert embeddings.runner.intra_op_threads == 2
    assert tiny.encode_text("hello").size > 0  # loaded and usable so


def test_intra_op_threads_must_be_positive(tmp_path: Path) -> None:
    path = write_config(tmp_path / "inferq.toml")
    path.write_text(path.read_text().replace("intra_op_threads = 1", "intra_op_threads = 0"))
    with pytest.raises(Exception, match="intra_op_threads"):
        load_config(path)
