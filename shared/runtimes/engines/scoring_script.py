"""Scoring scripts, Azure ML's contract: a Python file with `init()`, called once after the deployment's model
files are in place (their folder in `AZUREML_MODEL_DIR`), and `run(raw_data)`, called per job with the request
body as JSON text. What `run` returns is the response body; what it raises fails the job with its message."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from shared.domain.errors import ConfigError, ScriptError

MODEL_DIR_VARIABLE = "AZUREML_MODEL_DIR"
# The variable is process-wide: scripts are imported and initialised one at a time.
_ENVIRONMENT_LOCK = threading.Lock()


class ScoringScript:
    def __init__(self, deployment: str, script: Path, model_dir: Path) -> None:
        self.deployment = deployment
        self.script = script
        self.model_dir = model_dir
        self._module: ModuleType | None = None
        # Scripts are written for Azure ML's server, which calls run() one request at a time per worker.
        self._lock = threading.Lock()

    def load(self) -> None:
        """Import the script and call its init(); ConfigError (naming the script) when either fails."""
        with self._lock:
            if self._module is not None:
                return
            with _model_dir(self.model_dir):
                module = self._import()
                try:
                    module.init()
                except Exception as exc:
                    raise self._error(f"init() failed: {type(exc).__name__}: {exc}") from exc
            self._module = module

    def run(self, raw_data: str) -> Any:
        self.load()
        assert self._module is not None
        with self._lock:
            try:
                return self._module.run(raw_data)
            except Exception as exc:  # whatever the script raises is the job's error, not the worker's
                raise ScriptError(f"{type(exc).__name__}: {exc}") from exc

    def _import(self) -> ModuleType:
        path = self.script.resolve()
        if not path.is_file():
            raise self._error("the file does not exist")
        name = "inferq_scoring_" + re.sub(r"\W", "_", self.deployment)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise self._error("it is not a Python file")
        module = importlib.util.module_from_spec(spec)
        folder = str(path.parent)
        if folder not in sys.path:
            sys.path.append(folder)  # its own helper modules import as on Azure ML (appended: ours come first)
        sys.modules[name] = module  # dataclasses and pickle look a module up by name
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise self._error(f"it can't be imported: {type(exc).__name__}: {exc}") from exc
        missing = [f for f in ("init", "run") if not callable(getattr(module, f, None))]
        if missing:
            del sys.modules[name]
            raise self._error(f"it defines no {' and no '.join(f + '()' for f in missing)}")
        return module

    def _error(self, why: str) -> ConfigError:
        return ConfigError(f"deployment {self.deployment}: scoring script {self.script}: {why}")


@contextmanager
def _model_dir(folder: Path) -> Iterator[None]:
    # Written, not read: the scripts' contract (Azure ML sets it for them). Restored after init().
    with _ENVIRONMENT_LOCK:
        before = os.environ.get(MODEL_DIR_VARIABLE)
        os.environ[MODEL_DIR_VARIABLE] = str(folder.resolve())
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(MODEL_DIR_VARIABLE, None)
            else:
                os.environ[MODEL_DIR_VARIABLE] = before
