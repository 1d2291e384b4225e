"""Text embeddings: the request check (at the edge and again in the worker), the estimate, the runtime (ONNX
Runtime behind a micro-batcher) and the job's execution."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np

from shared.domain.config import Deployment, RunnerKind
from shared.domain.errors import InvalidInput
from shared.runtimes.base import (
    Edge,
    Fetch,
    TaskOutput,
    Work,
    check_dimensions,
    check_unicode,
    extras_allowed,
    token_bound,
)
from shared.runtimes.base import parse_payload as _parse
from shared.runtimes.batching import MicroBatcher
from shared.runtimes.engines.onnx_embeddings import RUN_OVERHEAD_TOKENS, Embedding, EmbeddingRunner, Tokens
from shared.schemas.embeddings import EmbeddingItem, EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage
from shared.schemas.usage import Meter
from shared.settings import Settings


class EmbeddingsRuntime:
    """The deployment's ONNX model; concurrent `predict` calls are merged into micro-batches, shared fairly between
    owners (tenants) and capped at `max_batch_tokens` tokens, so no request waits behind a big one's whole run."""

    def __init__(
        self,
        runner: EmbeddingRunner,
        max_batch_size: int,
        max_wait_s: float,
        workers: int = 1,
        max_batch_tokens: int | None = None,
        label: str = "",
    ) -> None:
        self.runner = runner
        self.batcher = MicroBatcher(
            runner.embed,
            max_batch_size,
            max_wait_s,
            workers,
            cost=_tokens,
            max_batch_cost=max_batch_tokens,
            run_overhead=RUN_OVERHEAD_TOKENS,
            label=label,
        )

    def predict(self, inputs: Sequence[str | Sequence[int]], owner: str = "") -> list[Embedding]:
        """Texts or token arrays (tokenized before the batcher, which weighs them by their tokens)."""
        return self.batcher(self.runner.encode(inputs), owner)

    def load(self) -> None:
        self.runner.load()

    def close(self) -> None:
        self.batcher.close()


def _tokens(encoding: Tokens) -> int:
    return len(encoding.ids)


def check(request: EmbeddingsRequest, deployment: Deployment, edge: Edge) -> dict[str, Any]:
    """The payload to queue, or InvalidInput naming the parameter."""
    extras = extras_allowed(request, edge.extra)
    if extras and edge.extra == "pass-through":
        # The embeddings runner takes no extra parameters: it rejects what is passed through.
        name = next(iter(extras))
        raise InvalidInput(
            f"Parameter '{name}' is not supported by model '{deployment.name}'.", loc=("body", name), input=extras[name]
        )
    inputs = request.inputs
    max_inputs, max_chars = edge.settings.max_inputs, edge.settings.max_input_chars
    if not inputs:
        raise InvalidInput("input must not be empty", loc=("body", "input"), input=request.input)
    if len(inputs) > max_inputs:
        raise InvalidInput(
            f"At most {max_inputs} inputs per request; got {len(inputs)}.", loc=("body", "input"), input=len(inputs)
        )
    for i, text in enumerate(inputs):
        if not isinstance(text, str):
            _check_token_array(text, i, deployment, edge)
            continue
        if not text.strip():
            raise InvalidInput("input strings must not be empty", loc=("body", "input", i), input=text)
        if len(text) > max_chars:
            raise InvalidInput(
                f"Input {i} has {len(text)} characters; at most {max_chars}.",
                loc=("body", "input", i),
                input=len(text),
            )
    check_dimensions(request.dimensions, deployment)
    payload = request.model_dump(exclude_none=True, exclude=set(extras))
    check_unicode(payload)
    return payload


def _check_token_array(ids: list[int], i: int, deployment: Deployment, edge: Edge) -> None:
    """Token ids are embedded as given (no truncation, no special tokens added): none, too many, or an id outside
    the tokenizer's vocabulary (when the edge tool, or the worker's model, knows its size) is InvalidInput."""
    loc = ("body", "input", i)
    if not ids:
        raise InvalidInput("token arrays must not be empty", loc=loc, input=ids)
    if len(ids) > deployment.max_tokens:
        raise InvalidInput(
            f"Input {i} has {len(ids)} tokens; model '{deployment.name}' takes at most {deployment.max_tokens}.",
            loc=loc,
            input=len(ids),
        )
    vocab = edge.tool()
    if isinstance(vocab, int):
        bad = next((t for t in ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise InvalidInput(
                f"Input {i} has token id {bad}, outside model '{deployment.name}' vocabulary (0 to {vocab - 1}).",
                loc=loc,
                input=bad,
            )


def parse(payload: dict[str, Any]) -> EmbeddingsRequest:
    request: EmbeddingsRequest = _parse(EmbeddingsRequest, payload)
    if request.model_extra:
        raise InvalidInput(f"unknown parameters: {sorted(request.model_extra)}", loc=("body",))
    return request


class EmbeddingsKind:
    kind = RunnerKind.EMBEDDINGS
    gen_ai_operation = "embeddings"  # the OpenTelemetry GenAI semantic conventions' name for what it runs
    cancellable = False
    deterministic_usage = True
    light_check = True  # strings' lengths, token ids against the vocabulary size (read once, then kept)

    def runtime(self, deployment: Deployment, fetch: Fetch, settings: Settings) -> EmbeddingsRuntime:
        s = settings
        threads = deployment.intra_op_threads or s.intra_op_threads
        runner = EmbeddingRunner(
            fetch(deployment.model.files),
            deployment.max_tokens,
            threads,  # one session: the concurrent runs share its threads
            s.max_batch_size,
        )
        return EmbeddingsRuntime(
            runner, s.max_batch_size, s.max_batch_wait_ms / 1000, s.batch_workers, s.max_batch_tokens, deployment.name
        )

    def edge_tool(self, deployment: Deployment, fetch: Fetch) -> int:
        """The tokenizer's vocabulary size, to check token-array inputs: only `tokenizer.json` is fetched, and only
        when a request sends token arrays (the edge calls its tool lazily)."""
        from tokenizers import Tokenizer

        folder = fetch({k: v for k, v in deployment.model.files.items() if k == "tokenizer.json"})
        return int(Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab_size(with_added_tokens=True))

    def check(self, request: EmbeddingsRequest, deployment: Deployment, edge: Edge) -> dict[str, Any]:
        return check(request, deployment, edge)

    def estimate(self, deployment: Deployment, payload: dict[str, Any]) -> int:
        """At most the model's `max_tokens` per input (it truncates there)."""
        inputs = payload.get("input", "")
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        items = inputs if isinstance(inputs, list) else []
        # A token array bills its length as given (at most max_tokens: longer ones are refused).
        return sum(min(deployment.max_tokens, len(x) if isinstance(x, list) else token_bound(x)) for x in items)

    def execute(self, work: Work, payload: dict[str, Any], runtime: EmbeddingsRuntime) -> TaskOutput:
        request = parse(payload)
        check(request, work.deployment, Edge("error", work.settings, lambda: runtime.runner.vocab_size))
        embeddings = runtime.predict(request.inputs, owner=work.job.tenant)
        vectors = [encode_vector(e, request.encoding_format) for e in embeddings]
        return output(work, vectors, sum(e.tokens for e in embeddings))

    def render(self, result: dict[str, Any]) -> Any:
        return result


def output(work: Work, vectors: Sequence[list[int] | list[float] | str], tokens: int) -> TaskOutput:
    """The job's result (the embeddings response) and its usage: `tokens` input tokens."""
    response = EmbeddingsResponse(
        id=work.job.id,
        # Built from the model's own vectors, already of the declared types: validating every component again
        # took longer than the rest of the response (about 40 µs a 384-dimension vector).
        data=[EmbeddingItem.model_construct(index=i, embedding=v) for i, v in enumerate(vectors)],
        model=work.deployment.model_name,
        usage=EmbeddingsUsage(prompt_tokens=tokens, total_tokens=tokens),
    )
    return TaskOutput(result=response, usage={Meter.INPUT_TOKENS: tokens})


def encode_vector(embedding: Embedding, encoding_format: str) -> list[int] | list[float] | str:
    """The vector in the requested format. The vectors are unit-norm, so every component lies in [-1, 1]: int8 is
    round(127·x), a fixed symmetric scale that needs no calibration data, never clips, keeps 0 at 0 (int8 dot
    products are 127² × the cosine, up to rounding) and is the same for every request; uint8 is that + 128.
    binary/ubinary pack one sign bit per dimension (x > 0 → 1), 8 dimensions per byte, first dimension in the
    high bit; ubinary gives the bytes as 0..255, binary as signed bytes (byte − 128), as Cohere's formats do."""
    v = embedding.vector
    if encoding_format == "base64":
        return base64.b64encode(v.astype("<f4").tobytes()).decode("ascii")
    if encoding_format in ("int8", "uint8"):
        q = np.clip(np.rint(v * 127), -127, 127).astype(np.int16)
        return [int(x) for x in (q + 128 if encoding_format == "uint8" else q)]
    if encoding_format in ("binary", "ubinary"):
        packed = np.packbits(v > 0).astype(np.int16)
        return [int(x) for x in (packed - 128 if encoding_format == "binary" else packed)]
    floats: list[float] = v.tolist()  # float32 → Python floats, as float(x) each, in a fifth of the time
    return floats


KIND = EmbeddingsKind()
