"""Sentence embeddings on ONNX Runtime (CPU): tokenize in batches → run → mean pool + L2 normalise."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from shared.domain.errors import ModelError
from shared.runtimes.batching import runs
from shared.runtimes.engines.sessions import cpu_session

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Encoding, Tokenizer

# What one session run costs beyond its rows, in token-rows: all-MiniLM-L6-v2 int8 on one core runs in about
# 1.4 ms + 0.24 ms per token-row, so a run is worth about 6 token-rows of padding (`scripts/bench.py`, raw rows).
RUN_OVERHEAD_TOKENS = 6


class Tokens(Protocol):
    """One input's tokens as a run takes them: a tokenizer's `Encoding`, or `TokenIds` given by the client."""

    @property
    def ids(self) -> list[int]: ...
    @property
    def attention_mask(self) -> list[int]: ...
    @property
    def type_ids(self) -> list[int]: ...


@dataclass(frozen=True)
class TokenIds:
    """A client's token array, embedded as given (one segment, every token attended)."""

    ids: list[int]

    @property
    def attention_mask(self) -> list[int]:
        return [1] * len(self.ids)

    @property
    def type_ids(self) -> list[int]:
        return [0] * len(self.ids)


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
        self._pad_id = 0
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
            # The shipped tokenizer pads to a fixed 128; `_preprocess` pads each run to its own longest input.
            tokenizer.no_padding()
            tokenizer.enable_truncation(max_length=self.max_tokens)
            self._pad_id = tokenizer.token_to_id("[PAD]") or 0
            session = cpu_session(self.model_dir / "model.onnx", self.intra_op_threads)
            self._input_names = {i.name for i in session.get_inputs()}
            self._tokenizer, self._session = tokenizer, session

    def predict(self, texts: Sequence[str]) -> list[Embedding]:
        return self.embed(self.tokenize(texts))

    @property
    def vocab_size(self) -> int:
        self.load()
        assert self._tokenizer is not None
        return int(self._tokenizer.get_vocab_size(with_added_tokens=True))

    def encode(self, inputs: Sequence[str | Sequence[int]]) -> list[Tokens]:
        """Texts tokenized (in one batch), token arrays as given, in the inputs' order."""
        texts = iter(self.tokenize([x for x in inputs if isinstance(x, str)]))
        return [next(texts) if isinstance(x, str) else TokenIds(list(x)) for x in inputs]

    def tokenize(self, texts: Sequence[str]) -> list[Encoding]:
        """Each text's tokens, truncated at `max_tokens`, unpadded."""
        self.load()
        assert self._tokenizer is not None
        return self._tokenizer.encode_batch(list(texts), add_special_tokens=True)

    def embed(self, encodings: Sequence[Tokens]) -> list[Embedding]:
        self.load()
        # Runs of similar token lengths, each padded only to its own longest: padding is most of the waste in a
        # batch of mixed lengths. Results go back in the caller's order.
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        out: list[Embedding | None] = [None] * len(encodings)
        for run in runs([len(encodings[i].ids) for i in order], self.max_batch_size, RUN_OVERHEAD_TOKENS):
            chunk = order[run]
            for i, emb in zip(chunk, self._run([encodings[i] for i in chunk]), strict=True):
                out[i] = emb
        return [e for e in out if e is not None]

    def _run(self, encodings: list[Tokens]) -> list[Embedding]:
        assert self._session is not None
        feeds, mask = self._preprocess(encodings)
        try:
            (hidden, *_) = self._session.run(None, {k: v for k, v in feeds.items() if k in self._input_names})
        except Exception as exc:  # onnxruntime raises its own types; the job fails with the reason
            raise ModelError(f"model run failed: {exc}") from exc
        return self._postprocess(np.asarray(hidden), mask)

    def _preprocess(self, encodings: list[Tokens]) -> tuple[dict[str, Any], np.ndarray]:
        """One run's feeds, padded to its longest input."""
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n], mask[row, :n], types[row, :n] = e.ids, e.attention_mask, e.type_ids
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}, mask

    @staticmethod
    def _postprocess(hidden: np.ndarray, mask: np.ndarray) -> list[Embedding]:
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        normed = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return [
            Embedding(vector=v.astype(np.float32), tokens=int(n)) for v, n in zip(normed, mask.sum(axis=1), strict=True)
        ]
