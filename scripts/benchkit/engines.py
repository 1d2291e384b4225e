"""In-process rows: raw ONNX Runtime and onnxruntime-genai loops (the physical limit), and the product's runners.

The raw rows use onnxruntime, tokenizers and onnxruntime-genai directly, never the product. The runner rows import
the product lazily and accept the module paths it has had, so the bench survives a refactor of `shared/`.
"""

from __future__ import annotations

import importlib
import inspect
import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MAX_TOKENS = 256  # the deployment's truncation, as the product runs it
MESSAGES = [{"role": "user", "content": "Tell me a story"}]
EMBEDDING_RUNNERS = ("shared.runtimes.engines.onnx_embeddings", "shared.runners.embeddings")
GENERATION_RUNNERS = ("shared.runtimes.engines.genai", "shared.runners.generation")
WORDS = (
    "the quick brown fox jumps over a lazy dog while seven wizards quietly hex jolly boxing frogs near an old "
    "harbour where fishermen mend their nets before dawn and children chase gulls across wet sand under grey "
    "clouds that promise rain by noon although nobody seems to mind the weather today"
).split()


def corpus(n: int, seed: int = 0) -> list[str]:
    """`n` deterministic texts of 6-24 words."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 24))) for _ in range(n)]


@dataclass
class Run:
    """What one row measured: `count` items (texts, requests) in `seconds`, with per-call latencies."""

    count: int
    seconds: float
    latencies: list[float] = field(default_factory=list)  # seconds per call (request, or batch-1 run)
    firsts: list[float] = field(default_factory=list)  # seconds to the first streamed content chunk
    tokens: int = 0  # tokens the calls reported (embedded or generated)
    errors: int = 0
    first_error: str = ""
    cpu_s: float | None = None  # CPU the measured side used, all its threads: the server process, or this one
    client_cpu_s: float | None = None  # CPU the load generator used (HTTP rows: it shares the machine)
    per_request: int = 1  # texts a request carried (HTTP rows of k texts a request: `count` counts texts)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else float("nan")

    @property
    def token_rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else float("nan")


class RawEmbedder:
    """Tokenizer padded to the longest input, truncation at 256, one InferenceSession: tokenize → run → mean pool."""

    def __init__(self, model_dir: Path, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}

    def embed(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})[0]
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    def token_counts(self, texts: list[str]) -> list[int]:
        return [sum(e.attention_mask) for e in self.tokenizer.encode_batch(texts)]


def raw_embeddings(model_dir: Path, texts: list[str], batch: int, threads: int, sort: bool, runs: int = 1) -> Run:
    """The corpus in batches of `batch`, `runs` batches at once (threads sharing one session, each run on
    `threads` intra-op threads)."""
    engine = RawEmbedder(model_dir, threads)
    engine.embed(texts[:batch])  # warm up: the first run allocates
    latencies: list[float] = []
    ordered = sorted(texts, key=len) if sort else texts
    batches = iter([ordered[i : i + batch] for i in range(0, len(ordered), batch)])
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                texts = next(batches, None)
            if texts is None:
                return
            t0 = time.perf_counter()
            engine.embed(texts)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(runs)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return Run(len(texts), time.perf_counter() - start, latencies if batch == 1 else [])


def token_counts(model_dir: Path, texts: list[str]) -> list[int]:
    return RawEmbedder(model_dir, 1).token_counts(texts)


def import_first(modules: tuple[str, ...], *names: str) -> tuple[Any, ...]:
    """`names` from the first of `modules` that has them all (the product's module paths move)."""
    failures = []
    for module in modules:
        try:
            imported = importlib.import_module(module)
            return tuple(getattr(imported, n) for n in names)
        except (ImportError, AttributeError) as exc:
            failures.append(f"{module}: {exc}")
    raise ImportError("; ".join(failures))


def construct(cls: Any, *args: Any, **kwargs: Any) -> Any:
    """`cls(*args, **kwargs)` without the keyword arguments its signature no longer takes."""
    params = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return cls(*args, **kwargs)


def runner_embeddings(model_dir: Path, texts: list[str], batch: int, threads: int) -> Run:
    """The product's embedding runner, given the whole corpus at once (it sorts by length and cuts batches)."""
    (runner_cls,) = import_first(EMBEDDING_RUNNERS, "EmbeddingRunner")
    runner = construct(runner_cls, model_dir, max_tokens=MAX_TOKENS, intra_op_threads=threads, max_batch_size=batch)
    runner.load()
    runner.predict(texts[:batch])
    start = time.perf_counter()
    runner.predict(texts)
    return Run(len(texts), time.perf_counter() - start)


def raw_generation(model_dir: Path, new_tokens: int, requests: int, threads: int) -> Run:
    """A plain onnxruntime-genai token loop: greedy, one generator per request, tokens decoded as they come."""
    import onnxruntime_genai as og

    config = og.Config(str(model_dir))
    config.overlay(json.dumps({"model": {"decoder": {"session_options": _threads(threads)}}}))
    model = og.Model(config)
    tokenizer = og.Tokenizer(model)
    ids = tokenizer.encode(tokenizer.apply_chat_template(json.dumps(MESSAGES), add_generation_prompt=True))

    def one() -> int:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + new_tokens, do_sample=False)
        generator = og.Generator(model, params)
        generator.append_tokens(ids)
        stream, n = tokenizer.create_stream(), 0
        while not generator.is_done():
            generator.generate_next_token()
            stream.decode(int(generator.get_next_tokens()[0]))
            n += 1
        return n

    one()
    return _timed_generations(one, requests)


def runner_generation(model_dir: Path, new_tokens: int, requests: int, threads: int) -> Run:
    runner_cls, options_cls = import_first(GENERATION_RUNNERS, "GenerationRunner", "GenerationOptions")
    runner = construct(runner_cls, model_dir, intra_op_threads=threads)
    prompt = runner.encode_chat(MESSAGES)

    def one() -> int:
        generation = runner.generate(prompt, construct(options_cls, max_new_tokens=new_tokens, temperature=0))
        for _ in generation:
            pass
        return int(generation.completion_tokens)

    one()
    return _timed_generations(one, requests)


def _timed_generations(one: Any, requests: int) -> Run:
    latencies, tokens = [], 0
    start = time.perf_counter()
    for _ in range(requests):
        t0 = time.perf_counter()
        tokens += one()
        latencies.append(time.perf_counter() - t0)
    return Run(requests, time.perf_counter() - start, latencies, tokens=tokens)


def _threads(threads: int) -> dict[str, int]:
    return {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
