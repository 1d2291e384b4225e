"""The runtime registry (MLServer's `MultiModelRegistry`): a deployment's name resolves to its loaded runtime,
loaded once per process on first use. Each deployment has its own lock, so loading one model (a download, a
slow init) never blocks a job on another deployment. `KINDS` is the one table from a deployment's `kind` to the
module that knows what that kind means."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from shared.domain.config import Deployment, RunnerKind
from shared.domain.errors import ConfigError, ModelNotBuilt
from shared.domain.ports import ModelSource
from shared.runtimes import chat, embeddings, image_embeddings, score, text_classifier
from shared.runtimes.base import Kind, Runtime
from shared.settings import Settings

KINDS: Mapping[RunnerKind, Kind[Any]] = {
    RunnerKind.EMBEDDINGS: embeddings.KIND,
    RunnerKind.CHAT: chat.KIND,
    RunnerKind.SCORE: score.KIND,
    RunnerKind.TEXT_CLASSIFIER: text_classifier.KIND,
    RunnerKind.IMAGE_EMBEDDINGS: image_embeddings.KIND,
}


class RuntimeRegistry:
    def __init__(self, settings: Settings, models: ModelSource, kinds: Mapping[RunnerKind, Kind[Any]] = KINDS):
        self._settings = settings
        self._models = models
        self._kinds = kinds
        self._runtimes: dict[str, Runtime] = {}
        self._edge_tools: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()  # held only to find a deployment's lock, never while loading

    def kind(self, deployment: Deployment) -> Kind[Any]:
        try:
            return self._kinds[deployment.kind]
        except KeyError:
            raise ConfigError(f"deployment {deployment.name}: kind {deployment.kind} is not available") from None

    def runtime(self, deployment: Deployment) -> Runtime:
        """The deployment's runtime, loaded (fetching its files first) by the first caller."""
        runtime = self._runtimes.get(deployment.name)
        if runtime is not None:
            return runtime
        with self._lock(deployment.name):
            if deployment.name not in self._runtimes:
                deployment = self.built(deployment)
                loading = self.kind(deployment).runtime(deployment, self._fetcher(deployment), self._settings)
                loading.load()
                self._runtimes[deployment.name] = loading
            return self._runtimes[deployment.name]

    def edge_tool(self, deployment: Deployment) -> Any:
        """What the HTTP edge needs to check the deployment's requests (never its model), or None."""
        key = f"edge:{deployment.name}"
        if deployment.name in self._edge_tools:
            return self._edge_tools[deployment.name]
        with self._lock(key):
            if deployment.name not in self._edge_tools:
                deployment = self.built(deployment)
                tool = self.kind(deployment).edge_tool(deployment, self._fetcher(deployment))
                self._edge_tools[deployment.name] = tool
            return self._edge_tools[deployment.name]

    def built(self, deployment: Deployment) -> Deployment:
        """The deployment with its model's files pinned: as the config lists them, or as its build's manifest does
        (read again until the model loads, so a folder built while the host runs is served without a restart).
        ModelNotBuilt while a manifest's folder is not built."""
        spec = deployment.model
        if spec.manifest is None:
            return deployment
        try:
            files = self._models.manifest(spec.source, spec.manifest)
        except ModelNotBuilt as exc:
            raise ModelNotBuilt(f"Deployment {deployment.name!r} is unavailable: {exc.message}.") from None
        return deployment.model_copy(update={"model": spec.model_copy(update={"files": files, "manifest": None})})

    def unavailable(self, deployment: Deployment) -> str | None:
        """Why the deployment can't serve now (its model is not built), or None."""
        try:
            self.built(deployment)
        except ModelNotBuilt as exc:
            return exc.message
        return None

    def preload(self, deployment: Deployment) -> None:
        """Load the deployment's model now rather than on its first job."""
        self.runtime(deployment)

    def close(self) -> None:
        with self._guard:
            runtimes, self._runtimes = list(self._runtimes.values()), {}
        for runtime in runtimes:
            runtime.close()

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _fetcher(self, deployment: Deployment) -> Any:
        def fetch(files: dict[str, str], of: Literal["model", "code"] = "model") -> Path:
            spec = deployment.code if of == "code" else deployment.model
            if spec is None:
                raise ConfigError(f"deployment {deployment.name} has no {of} files")
            return self._models.fetch(spec.source, files, of)

        return fetch
