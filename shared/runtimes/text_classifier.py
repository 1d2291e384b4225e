"""Text classifiers for content safety: an ONNX model (`model.onnx`, input `input_ids` [batch, tokens] int64, output
`scores` [batch, labels] in 0..1) with its `tokenizer.json`. The deployment's `labels` say what each output means
("hate:high"); an output at or above `label_threshold` is on, and a category's severity is the highest one on.

It implements the content-safety classifier port (`TextClassifier`): gateways and workers rate prompts and
completions with it. As a job kind it rates `{"input": [texts]}` (a producer on the queue), billed per input token.
`onnxruntime` and `tokenizers` are imported in load()."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from shared.domain.config import Deployment, RunnerKind
from shared.domain.content_safety import Severities
from shared.domain.errors import ConfigError, ModelError
from shared.runtimes.base import Edge, Fetch, TaskOutput, Work, check_unicode, parse_payload, token_bound
from shared.runtimes.engines.sessions import cpu_session
from shared.schemas.usage import Meter
from shared.settings import Settings

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Tokenizer

MAX_TOKENS = 512  # a classifier's window: a longer text is rated window by window, each output at its highest
OVERLAP = 64  # tokens two windows share, so a phrase across a window's edge is seen whole in one of them


class ClassifyPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: list[StrictStr] = Field(min_length=1, max_length=64)


class Rating(BaseModel):
    index: int
    categories: dict[str, str]  # category → severity, for the categories not safe


class ClassifyResult(BaseModel):
    object: str = "list"
    data: list[Rating]
    usage: dict[str, int]


class TextClassifierRuntime:
    def __init__(self, deployment: Deployment, model_dir: Path, intra_op_threads: int = 1) -> None:
        self.deployment = deployment
        self.model_dir = model_dir
        self.intra_op_threads = intra_op_threads
        self._session: onnxruntime.InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None
        self._pad_id = 0
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            from tokenizers import Tokenizer

            try:
                tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
                session = cpu_session(self.model_dir / "model.onnx", self.intra_op_threads)
            except Exception as exc:  # tokenizers and onnxruntime raise their own types
                raise ConfigError(f"{self.model_dir}: the classifier does not load: {exc}") from exc
            outputs = session.get_outputs()[0].shape
            if len(outputs) != 2 or outputs[1] != len(self.deployment.labels):
                raise ConfigError(
                    f"deployment {self.deployment.name}: the model has {outputs[-1]} outputs, "
                    f"`labels` names {len(self.deployment.labels)}"
                )
            tokenizer.no_truncation()
            tokenizer.no_padding()
            self._pad_id = tokenizer.token_to_id("[PAD]") or 0
            self._tokenizer, self._session = tokenizer, session

    def close(self) -> None:
        with self._lock:
            self._session = self._tokenizer = None

    def classify(self, texts: Sequence[str]) -> list[Severities]:
        return [self.deployment.rate(row) for row in self.scores(texts)[0]]

    def scores(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """Each text's output scores, and the tokens rated."""
        self.load()
        assert self._tokenizer is not None and self._session is not None
        encodings = self._tokenizer.encode_batch(list(texts))
        windows, owners = [], []
        for i, encoding in enumerate(encodings):
            step = MAX_TOKENS - OVERLAP
            for start in range(0, max(1, len(encoding.ids) - OVERLAP), step):
                windows.append(encoding.ids[start : start + MAX_TOKENS] or [self._pad_id])
                owners.append(i)
        width = max(len(w) for w in windows)
        ids = np.asarray([w + [self._pad_id] * (width - len(w)) for w in windows], dtype=np.int64)
        try:
            (scores,) = self._session.run(None, {"input_ids": ids})
        except Exception as exc:
            raise ModelError(f"the classifier failed: {exc}") from exc
        rows = np.full((len(encodings), scores.shape[1]), -np.inf, dtype=np.float64)
        np.maximum.at(rows, np.asarray(owners), scores)
        tokens = sum(len(e.ids) for e in encodings)
        return [[float(x) for x in row] for row in rows], tokens


class TextClassifierKind:
    kind = RunnerKind.TEXT_CLASSIFIER
    cancellable = False
    deterministic_usage = True
    light_check = False  # a classifier's inputs may be screened by content safety's own model

    def runtime(self, deployment: Deployment, fetch: Fetch, settings: Settings) -> TextClassifierRuntime:
        threads = deployment.intra_op_threads or settings.intra_op_threads
        return TextClassifierRuntime(deployment, fetch(deployment.model.files), threads)

    def edge_tool(self, deployment: Deployment, fetch: Fetch) -> None:  # noqa: ARG002 (the protocol's)
        return None

    def check(self, request: Any, deployment: Deployment, edge: Edge) -> dict[str, Any]:  # noqa: ARG002
        payload = request.model_dump() if isinstance(request, BaseModel) else request
        check_unicode(payload)
        parse_payload(ClassifyPayload, payload)
        return dict(payload)

    def estimate(self, deployment: Deployment, payload: dict[str, Any]) -> int:  # noqa: ARG002
        texts = payload.get("input")
        return sum(min(MAX_TOKENS, token_bound(t)) for t in texts) if isinstance(texts, list) else 0

    def execute(self, work: Work, payload: dict[str, Any], runtime: TextClassifierRuntime) -> TaskOutput:
        request: ClassifyPayload = parse_payload(ClassifyPayload, payload)
        rows, tokens = runtime.scores(request.input)
        data = [
            Rating(index=i, categories={c.value: s.value for c, s in work.deployment.rate(row).items()})
            for i, row in enumerate(rows)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return TaskOutput(ClassifyResult(data=data, usage=usage), {Meter.INPUT_TOKENS: tokens})

    def render(self, result: dict[str, Any]) -> Any:
        return result


KIND = TextClassifierKind()
