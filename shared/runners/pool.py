"""Loaded runners, one per deployment per process, created on first use and wrapped in a micro-batcher."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from shared.config import Deployment, RunnerKind
from shared.errors import ConfigError
from shared.ports import ModelSource
from shared.runners.batching import MicroBatcher
from shared.settings import Settings

Predict = Callable[[Sequence[Any]], list[Any]]


class RunnerPool:
    def __init__(self, settings: Settings, models: ModelSource) -> None:
        self._settings = settings
        self._models = models
        self._loaded: dict[str, Predict] = {}
        self._lock = threading.Lock()

    def predictor(self, deployment: Deployment) -> Predict:
        with self._lock:
            if deployment.name not in self._loaded:
                self._loaded[deployment.name] = self._load(deployment)
            return self._loaded[deployment.name]

    def _load(self, deployment: Deployment) -> Predict:
        folder = self._models.fetch(deployment.model.source, deployment.model.files)
        s = self._settings
        if deployment.kind is RunnerKind.EMBEDDINGS:
            from shared.runners.embeddings import EmbeddingRunner

            runner = EmbeddingRunner(folder, deployment.max_tokens, s.intra_op_threads, s.max_batch_size)
            runner.load()
            return MicroBatcher(runner.predict, s.max_batch_size, s.max_batch_wait_ms / 1000)
        raise ConfigError(f"deployment {deployment.name}: runner kind {deployment.kind} is not available")
