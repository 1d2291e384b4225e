"""Text generation on ONNX Runtime GenAI (CPU): chat template → tokenize → one generator per request, token by
token, with stop sequences and OpenAI presence/frequency penalties. `onnxruntime_genai` is imported in load()."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from shared.domain.errors import ConfigError, InvalidInput, ModelError

if TYPE_CHECKING:
    import onnxruntime_genai


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int
    temperature: float | None = None  # None: the model's default (genai_config.json "search"); 0: greedy
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    repetition_penalty: float | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    # Constrained decoding (llguidance): (type, data), e.g. ("json_schema", schema text); `guided_by` is the request
    # parameter it comes from, named when the model can't enforce it.
    guidance: tuple[str, str] | None = None
    guided_by: str = "response_format"
    logprobs: int | None = None  # None: none; n: each token's log probability and the n likeliest alternatives


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's log probability under the model (before sampling settings and constraints), and the
    likeliest alternatives at its step."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class ModelLimits:
    context_length: int
    eos_token_ids: tuple[int, ...]
    vocab_size: int | None = None

    @classmethod
    def read(cls, model_dir: Path) -> ModelLimits:
        try:
            model = json.loads((model_dir / "genai_config.json").read_text(encoding="utf-8"))["model"]
            eos = model["eos_token_id"]
            vocab = int(model["vocab_size"]) if "vocab_size" in model else None
            eos_ids = tuple(int(t) for t in (eos if isinstance(eos, list) else [eos]))
            return cls(int(model["context_length"]), eos_ids, vocab)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{model_dir}: not an onnxruntime-genai model folder ({exc})") from exc


class GenerationRunner:
    """One model per process; every request gets its own generator and tokenizer stream (thread-safe)."""

    def __init__(self, model_dir: Path, intra_op_threads: int = 1) -> None:
        self.model_dir = model_dir
        self.intra_op_threads = intra_op_threads
        self.limits = ModelLimits.read(model_dir)
        self._model: onnxruntime_genai.Model | None = None
        self._tokenizer: onnxruntime_genai.Tokenizer | None = None
        self._og: Any = None
        self._lock = threading.Lock()

    @property
    def context_length(self) -> int:
        return self.limits.context_length

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            import onnxruntime_genai as og

            config = og.Config(str(self.model_dir))
            threads = {"intra_op_num_threads": self.intra_op_threads, "inter_op_num_threads": 1}
            config.overlay(json.dumps({"model": {"decoder": {"session_options": threads}}}))
            try:
                model = og.Model(config)
            except Exception as exc:  # genai raises plain RuntimeError
                raise ConfigError(f"{self.model_dir}: the model does not load: {exc}") from exc
            self._og, self._tokenizer, self._model = og, og.Tokenizer(model), model

    def close(self) -> None:
        with self._lock:
            self._og = self._tokenizer = self._model = None

    def encode_chat(self, messages: Sequence[dict[str, str]], tools: Sequence[dict[str, Any]] = ()) -> np.ndarray:
        """Token ids of the messages rendered with the model folder's chat template (generation prompt added);
        `tools` reach templates that render them."""
        self.load()
        assert self._tokenizer is not None
        with self._lock:  # tokenizing is quick; one at a time keeps the shared tokenizer safe
            try:
                prompt = self._tokenizer.apply_chat_template(
                    json.dumps(list(messages)),
                    tools=json.dumps(list(tools)) if tools else None,
                    add_generation_prompt=True,
                )
            except Exception as exc:
                raise ModelError(f"the chat template failed: {exc}") from exc
            return np.asarray(self._tokenizer.encode(prompt), dtype=np.int32)

    def encode_text(self, text: str) -> np.ndarray:
        self.load()
        assert self._tokenizer is not None
        with self._lock:
            return np.asarray(self._tokenizer.encode(text), dtype=np.int32)

    def generate(self, input_ids: np.ndarray, options: GenerationOptions) -> Generation:
        """A generation of at most `options.max_new_tokens`; the caller checked the prompt fits the context."""
        self.load()
        og, model, tokenizer = self._og, self._model, self._tokenizer
        assert model is not None and tokenizer is not None
        search: dict[str, Any] = {"max_length": min(len(input_ids) + options.max_new_tokens, self.context_length)}
        if options.temperature == 0:
            search["do_sample"] = False
        elif options.temperature is not None or options.top_p is not None or options.top_k is not None:
            search["do_sample"] = True
        for name in ("temperature", "top_p", "top_k", "repetition_penalty"):
            value = getattr(options, name)
            if value is not None and not (name == "temperature" and value == 0):
                search[name] = value
        if options.top_k is not None and self.limits.vocab_size:  # genai refuses more; it means "all" anyway
            search["top_k"] = min(options.top_k, self.limits.vocab_size)
        if options.seed is not None:
            search["random_seed"] = options.seed % 2**31  # genai takes a non-negative int; -1 means "random"
        try:
            params = og.GeneratorParams(model)
            params.set_search_options(**search)
            if options.guidance is not None:
                params.set_guidance(*options.guidance)
            generator = og.Generator(model, params)
            generator.append_tokens(input_ids)
        except Exception as exc:
            if options.guidance is not None and "grammar" in str(exc).lower():  # llguidance refused the schema
                name = options.guided_by
                raise InvalidInput(f"'{name}' can't be enforced on this model: {exc}", loc=("body", name)) from exc
            raise ModelError(f"generation failed to start: {exc}") from exc
        return Generation(generator, tokenizer.create_stream(), len(input_ids), options, self.limits, self.decode_token)

    def decode_token(self, token: int) -> str:
        assert self._tokenizer is not None
        with self._lock:
            return str(self._tokenizer.decode(np.asarray([token], dtype=np.int32)))


class Generation:
    """Iterate for text pieces, one per generated token ("" while a piece may be the start of a stop sequence).
    `completion_tokens` and `finish_reason` are current after every step; `close()` frees the generator."""

    def __init__(
        self,
        generator: Any,
        stream: Any,
        prompt_tokens: int,
        options: GenerationOptions,
        limits: ModelLimits,
        decode: Callable[[int], str] = str,
    ) -> None:
        self._generator, self._stream, self._decode = generator, stream, decode
        self.logprobs: list[TokenLogprob] = []  # with options.logprobs: one per completion token
        self._logits: np.ndarray | None = None  # the last step's logits, for its logprobs
        self._options, self._limits = options, limits
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
        self.finish_reason: Literal["stop", "length"] | None = None
        self._penalised = bool(options.presence_penalty or options.frequency_penalty)
        self._counts: np.ndarray | None = None  # how often each token was generated (sized by the first logits)

    def __iter__(self) -> Iterator[str]:
        stops = self._options.stop
        held = ""  # text that may be the start of a stop sequence: not released yet
        while True:
            token = self._next_token()
            if token is None:
                self.finish_reason = "length"
                break
            if token in self._limits.eos_token_ids:  # EOS ends the text; it is not part of it
                self.finish_reason = "stop"
                break
            self.completion_tokens += 1
            if self._logits is not None:
                self._record(token, self._logits)
            text = held + self._stream.decode(token)
            if not stops:  # the common case: looking for none cost 2 µs a token, under the step's interpreter lock
                yield text
                continue
            cut = _first_stop(text, stops)
            if cut is not None:
                self.finish_reason = "stop"
                yield text[:cut]
                return
            keep = _stop_prefix_length(text, stops)
            held = text[len(text) - keep :]
            yield text[: len(text) - keep]
        if held:
            yield held

    def _next_token(self) -> int | None:
        generator = self._generator
        try:
            if generator.is_done():
                return None
            if self._penalised or self._options.logprobs is not None:
                self._logits = self._step_logits()
            generator.generate_next_token()
            token = int(generator.get_next_tokens()[0])
        except Exception as exc:
            raise ModelError(f"generation failed: {exc}") from exc
        if self._counts is not None and 0 <= token < len(self._counts):
            self._counts[token] += 1
        return token

    def _step_logits(self) -> np.ndarray:
        """The next token's logits, penalised when asked (set back on the generator)."""
        logits = np.asarray(self._generator.get_logits(), dtype=np.float32)
        if self._penalised:
            # OpenAI's definition, over the tokens generated so far: logit -= count·frequency + (count > 0)·presence
            if self._counts is None:
                self._counts = np.zeros(logits.shape[-1], dtype=np.float32)
            counts = self._counts
            penalty = counts * self._options.frequency_penalty + (counts > 0) * self._options.presence_penalty
            logits = (logits - penalty).astype(np.float32)
            self._generator.set_logits(logits)
        return logits

    def _record(self, token: int, logits: np.ndarray) -> None:
        row = logits.reshape(-1).astype(np.float64)
        logp = row - (row.max() + np.log(np.exp(row - row.max()).sum()))
        n = self._options.logprobs or 0
        best = np.argpartition(-logp, n - 1)[:n] if n else np.empty(0, dtype=np.int64)
        best = best[np.argsort(-logp[best])]
        top = tuple((self._decode(int(i)), float(logp[i])) for i in best)
        value = float(logp[token]) if 0 <= token < len(logp) else float("-inf")
        self.logprobs.append(TokenLogprob(self._decode(token), value, top))

    def close(self) -> None:
        self._generator = self._stream = None


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def _stop_prefix_length(text: str, stops: Sequence[str]) -> int:
    """The longest end of `text` that is the beginning of a stop sequence (to hold back until it's decided)."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best
