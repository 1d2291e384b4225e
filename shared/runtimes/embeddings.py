"""Text embeddings: the request check (at the edge and again in the worker), the estimate, the runtime (ONNX
Runtime behind a micro-batcher) and the job's execution."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from shared.domain.config import Deployment, RunnerKind
from shared.domain.errors import InvalidInput
from shared.runtimes.base import Edge, Fetch, TaskOutput, Work, check_unicode, extras_allowed, token_bound
from shared.runtimes.base import parse_payload as _parse
from shared.runtimes.batching import MicroBatcher
from shared.runtimes.engines.onnx_embeddings import RUN_OVERHEAD_TOKENS, Embedding, EmbeddingRunner
from shared.schemas.embeddings import EmbeddingItem, EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage
from shared.schemas.usage import Meter
from shared.settings import Settings

if TYPE_CHECKING:
    from tokenizers import Encoding


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
        )

    def predict(self, texts: Sequence[str], owner: str = "") -> list[Embedding]:
        return self.batcher(self.runner.tokenize(texts), owner)

    def load(self) -> None:
        self.runner.load()

    def close(self) -> None:
        self.batcher.close()


def _tokens(encoding: Encoding) -> int:
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
        if not text.strip():
            raise InvalidInput("input strings must not be empty", loc=("body", "input", i), input=text)
        if len(text) > max_chars:
            raise InvalidInput(
                f"Input {i} has {len(text)} characters; at most {max_chars}.",
                loc=("body", "input", i),
                input=len(text),
            )
    if request.dimensions is not None and request.dimensions != deployment.dimensions:
        raise InvalidInput(
            f"Model '{deployment.name}' returns {deployment.dimensions} dimensions and can't change that; "
            f"got dimensions={request.dimensions}.",
            loc=("body", "dimensions"),
            input=request.dimensions,
        )
    payload = request.model_dump(exclude_none=True, exclude=set(extras))
    check_unicode(payload)
    return payload


def parse(payload: dict[str, Any]) -> EmbeddingsRequest:
    request: EmbeddingsRequest = _parse(EmbeddingsRequest, payload)
    if request.model_extra:
        raise InvalidInput(f"unknown parameters: {sorted(request.model_extra)}", loc=("body",))
    return request


class EmbeddingsKind:
    kind = RunnerKind.EMBEDDINGS
    cancellable = False
    deterministic_usage = True

    def runtime(self, deployment: Deployment, fetch: Fetch, settings: Settings) -> EmbeddingsRuntime:
        s = settings
        runner = EmbeddingRunner(
            fetch(deployment.model.files),
            deployment.max_tokens,
            max(1, s.intra_op_threads // s.batch_workers),  # the cores are shared by the concurrent runs
            s.max_batch_size,
        )
        return EmbeddingsRuntime(
            runner, s.max_batch_size, s.max_batch_wait_ms / 1000, s.batch_workers, s.max_batch_tokens
        )

    def edge_tool(self, deployment: Deployment, fetch: Fetch) -> None:  # noqa: ARG002 (the protocol's)
        return None

    def check(self, request: EmbeddingsRequest, deployment: Deployment, edge: Edge) -> dict[str, Any]:
        return check(request, deployment, edge)

    def estimate(self, deployment: Deployment, payload: dict[str, Any]) -> int:
        """At most the model's `max_tokens` per input (it truncates there)."""
        inputs = payload.get("input", "")
        texts = [inputs] if isinstance(inputs, str) else inputs if isinstance(inputs, list) else []
        return sum(min(deployment.max_tokens, token_bound(text)) for text in texts)

    def execute(self, work: Work, payload: dict[str, Any], runtime: EmbeddingsRuntime) -> TaskOutput:
        request = parse(payload)
        check(request, work.deployment, Edge("error", work.settings))
        embeddings = runtime.predict(request.inputs, owner=work.job.tenant)
        vectors = [_encode(e, request.encoding_format) for e in embeddings]
        return output(work, vectors, sum(e.tokens for e in embeddings))

    def render(self, result: dict[str, Any]) -> Any:
        return result


def output(work: Work, vectors: Sequence[list[float] | str], tokens: int) -> TaskOutput:
    """The job's result (the embeddings response) and its usage: `tokens` input tokens."""
    response = EmbeddingsResponse(
        id=work.job.id,
        data=[EmbeddingItem(index=i, embedding=v) for i, v in enumerate(vectors)],
        model=work.deployment.model_name,
        usage=EmbeddingsUsage(prompt_tokens=tokens, total_tokens=tokens),
    )
    return TaskOutput(result=response, usage={Meter.INPUT_TOKENS: tokens})


def _encode(embedding: Embedding, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(embedding.vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in embedding.vector]


KIND = EmbeddingsKind()
