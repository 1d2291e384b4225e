"""Sentence embeddings on ONNX Runtime (CPU): tokenize in batches → run → mean pool + L2 normalise."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.domain.errors import ModelError

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Tokenizer


@dataclass(frozen=True)
class Embedding:
    vector: np.ndarray
    tokens: int  # input tokens after truncation, [CLS] and [SEP] included


class EmbeddingRunner:
    def __init__(self, model_dir: Path, max_tokens: int, intra_op_threads: int = 1, max_batch_size: int = 32):
        self.model_dir = model_dir
        self.max_tokens = max_tokens
        self.intra_op_threads = intra_op_threads
        self.max_batch_size = max_batch_size
        self._session: onnxruntime.InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None
        self._input_names: set[str] = set()
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
            # The shipped tokenizer pads to a fixed 128; pad to the longest input of each batch instead.
            tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")
            tokenizer.enable_truncation(max_length=self.max_tokens)
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.intra_op_threads
            options.inter_op_num_threads = 1
            # ORT's pool threads spin between runs by default: right for a loop that only runs the model, wrong in
            # a server, where they take the cores the HTTP side and the worker need between batches.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(
                str(self.model_dir / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._input_names = {i.name for i in session.get_inputs()}
            self._tokenizer, self._session = tokenizer, session

    def predict(self, texts: Sequence[str]) -> list[Embedding]:
        self.load()
        # Similar lengths together waste less padding; results go back in the caller's order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[Embedding | None] = [None] * len(texts)
        for start in range(0, len(order), self.max_batch_size):
            chunk = order[start : start + self.max_batch_size]
            for i, emb in zip(chunk, self._run([texts[i] for i in chunk]), strict=True):
                out[i] = emb
        return [e for e in out if e is not None]

    def _run(self, texts: list[str]) -> list[Embedding]:
        assert self._tokenizer is not None and self._session is not None
        feeds, mask = self._preprocess(texts)
        try:
            (hidden, *_) = self._session.run(None, {k: v for k, v in feeds.items() if k in self._input_names})
        except Exception as exc:  # onnxruntime raises its own types; the job fails with the reason
            raise ModelError(f"model run failed: {exc}") from exc
        return self._postprocess(np.asarray(hidden), mask)

    def _preprocess(self, texts: list[str]) -> tuple[dict[str, Any], np.ndarray]:
        assert self._tokenizer is not None
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=True)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}, mask

    @staticmethod
    def _postprocess(hidden: np.ndarray, mask: np.ndarray) -> list[Embedding]:
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        normed = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return [
            Embedding(vector=v.astype(np.float32), tokens=int(n)) for v, n in zip(normed, mask.sum(axis=1), strict=True)
        ]
