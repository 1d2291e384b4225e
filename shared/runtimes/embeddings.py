"""Embeddings: request checks (at the edge and again in the worker) and the job's execution."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.domain.config import Deployment, Meter
from shared.domain.errors import InvalidInput
from shared.runtimes.base import ExtraMode, TaskOutput, check_unicode, extras_allowed
from shared.runtimes.engines.onnx_embeddings import Embedding
from shared.schemas.embeddings import EmbeddingItem, EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage

Predict = Callable[[Sequence[str]], list[Embedding]]


@dataclass(frozen=True)
class Limits:
    max_inputs: int
    max_input_chars: int


def check(request: EmbeddingsRequest, deployment: Deployment, limits: Limits, extra: ExtraMode) -> dict[str, Any]:
    """The payload to queue, or InvalidInput naming the parameter."""
    extras = extras_allowed(request, extra)
    if extras and extra == "pass-through":
        # The embeddings runner takes no extra parameters: it rejects what is passed through.
        name = next(iter(extras))
        raise InvalidInput(
            f"Parameter '{name}' is not supported by model '{deployment.name}'.", loc=("body", name), input=extras[name]
        )
    inputs = request.inputs
    if not inputs:
        raise InvalidInput("input must not be empty", loc=("body", "input"), input=request.input)
    if len(inputs) > limits.max_inputs:
        raise InvalidInput(
            f"At most {limits.max_inputs} inputs per request; got {len(inputs)}.",
            loc=("body", "input"),
            input=len(inputs),
        )
    for i, text in enumerate(inputs):
        if not text.strip():
            raise InvalidInput("input strings must not be empty", loc=("body", "input", i), input=text)
        if len(text) > limits.max_input_chars:
            raise InvalidInput(
                f"Input {i} has {len(text)} characters; at most {limits.max_input_chars}.",
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
    try:
        request = EmbeddingsRequest.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"invalid payload: {first['msg']}", loc=("body", *first["loc"])) from exc
    if request.model_extra:
        raise InvalidInput(f"unknown parameters: {sorted(request.model_extra)}", loc=("body",))
    return request


def execute(
    job_id: str, payload: dict[str, Any], deployment: Deployment, limits: Limits, predict: Predict
) -> TaskOutput:
    request = parse(payload)
    check(request, deployment, limits, "error")
    embeddings = predict(request.inputs)
    data = [EmbeddingItem(index=i, embedding=_encode(e, request.encoding_format)) for i, e in enumerate(embeddings)]
    tokens = sum(e.tokens for e in embeddings)
    response = EmbeddingsResponse(
        id=job_id,
        data=data,
        model=deployment.model_name,
        usage=EmbeddingsUsage(prompt_tokens=tokens, total_tokens=tokens),
    )
    return TaskOutput(result=response.model_dump(), usage={Meter.INPUT_TOKENS: tokens})


def _encode(embedding: Embedding, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(embedding.vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in embedding.vector]
