"""A deployment may set its own ONNX Runtime thread count: the tiny demo chat model runs on one thread while the
setting (the cores) applies to the others."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from shared.adapters.model_source import ModelSources
from shared.domain.config import AppConfig, load_config
from shared.runtimes.engines.onnx_embeddings import Embedding, EmbeddingRunner, Tokens
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


def test_an_embeddings_deployment_runs_two_batches_at_once_on_one_session_of_all_the_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default a second batch starts while the first runs (each run's Python leaves the cores to the other run),
    and the runs share one session with every intra-op thread, so a lone request runs on all of them."""
    both_running = threading.Barrier(2, timeout=10)

    def embed(self: EmbeddingRunner, encodings: Sequence[Tokens]) -> list[Embedding]:
        both_running.wait()  # broken (an error) unless another batch runs meanwhile
        return [Embedding(np.ones(384, dtype=np.float32), len(e.ids)) for e in encodings]

    monkeypatch.setattr(EmbeddingRunner, "embed", embed)
    config = load_config(write_config(tmp_path / "inferq.toml"))
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", intra_op_threads=2)
    runtime = RuntimeRegistry(settings, ModelSources.from_settings(settings)).runtime(
        config.deployment("all-MiniLM-L6-v2")
    )
    assert runtime.runner.intra_op_threads == 2
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(runtime.predict, ["the first request"])
        while both_running.n_waiting == 0 and not first.done():  # its batch is running
            time.sleep(0.01)
        second = pool.submit(runtime.predict, ["a second request, while the first batch runs"])
        assert [e.tokens for e in first.result(15)] == [5]
        assert len(second.result(15)) == 1
