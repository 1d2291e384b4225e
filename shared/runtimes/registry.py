"""Loaded runners, one per deployment per process, created on first use and wrapped in a micro-batcher."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.domain.config import Deployment, RunnerKind
from shared.domain.errors import ConfigError
from shared.domain.ports import ModelSource
from shared.runtimes.batching import MicroBatcher
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.runtimes.engines.genai import GenerationRunner
    from shared.runtimes.engines.prompts import PromptCounter
    from shared.runtimes.engines.scoring_script import ScoringScript

Predict = Callable[[Sequence[Any]], list[Any]]


class RunnerPool:
    def __init__(self, settings: Settings, models: ModelSource) -> None:
        self._settings = settings
        self._models = models
        self._loaded: dict[str, Predict] = {}
        self._generators: dict[str, GenerationRunner] = {}
        self._counters: dict[str, PromptCounter] = {}
        self._scripts: dict[str, ScoringScript] = {}
        self._lock = threading.Lock()

    def preload(self, deployment: Deployment) -> None:
        """Load the deployment's model now rather than on its first job."""
        if deployment.kind is RunnerKind.CHAT:
            self.generator(deployment)
        elif deployment.kind is RunnerKind.SCORE:
            self.scorer(deployment)
        else:
            self.predictor(deployment)

    def generator(self, deployment: Deployment) -> GenerationRunner:
        """The chat deployment's generation runner; no batching: every request gets its own generator."""
        with self._lock:
            if deployment.name not in self._generators:
                from shared.runtimes.engines.genai import GenerationRunner

                folder = self._models.fetch(deployment.model.source, deployment.model.files)
                runner = GenerationRunner(folder, self._settings.intra_op_threads)
                runner.load()
                self._generators[deployment.name] = runner
            return self._generators[deployment.name]

    def scorer(self, deployment: Deployment) -> ScoringScript:
        """The deployment's scoring script, imported and initialised once per process."""
        with self._lock:
            if deployment.name not in self._scripts:
                from shared.runtimes.engines.scoring_script import ScoringScript

                assert deployment.script is not None  # the config requires it for this kind
                folder = self._models.fetch(deployment.model.source, deployment.model.files)
                script = ScoringScript(deployment.name, Path(deployment.script), folder)
                script.load()
                self._scripts[deployment.name] = script
            return self._scripts[deployment.name]

    def prompt_counter(self, deployment: Deployment) -> PromptCounter:
        """Prompt token counts for the HTTP edge: fetches only the tokenizer files, never loads the model."""
        with self._lock:
            if deployment.name not in self._counters:
                from shared.runtimes.engines.prompts import EDGE_FILES, PromptCounter

                files = {k: v for k, v in deployment.model.files.items() if k in EDGE_FILES}
                self._counters[deployment.name] = PromptCounter(self._models.fetch(deployment.model.source, files))
            return self._counters[deployment.name]

    def predictor(self, deployment: Deployment) -> Predict:
        with self._lock:
            if deployment.name not in self._loaded:
                self._loaded[deployment.name] = self._load(deployment)
            return self._loaded[deployment.name]

    def _load(self, deployment: Deployment) -> Predict:
        folder = self._models.fetch(deployment.model.source, deployment.model.files)
        s = self._settings
        if deployment.kind is RunnerKind.EMBEDDINGS:
            from shared.runtimes.engines.onnx_embeddings import EmbeddingRunner

            runner = EmbeddingRunner(folder, deployment.max_tokens, s.intra_op_threads, s.max_batch_size)
            runner.load()
            return MicroBatcher(runner.predict, s.max_batch_size, s.max_batch_wait_ms / 1000)
        raise ConfigError(f"deployment {deployment.name}: runner kind {deployment.kind} is not available")
