"""Image embeddings (kind `image-embeddings`): a CLIP-style model whose images (`POST /images/embeddings`) and
texts (the text embeddings routes, sent to the same deployment) embed into one space. The request check (at the
edge and again in the worker), the estimate, the runtime (ONNX Runtime behind the micro-batcher) and the job.

An input with an image and a text embeds both and returns their mean, normalised: one vector for the pair, as
the reference's one result per input asks. Tokens are counted the way the model sees its input: an image is
(image_size / patch_size)² patches + the class token (50 for ViT-B/32), a text its tokens with the start and end
tokens, after truncation at the deployment's `max_tokens`; a pair is the sum.

Decoding: the edge reads each image's header (format, width, height: every limit is checked before a pixel is
decoded) and then proves it decodes (`images.check`), so a damaged or oversized image is a 4xx naming its input
and never becomes a job; the worker decodes it whole, again within the limits (a producer may queue directly).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from shared.domain.config import Deployment, RunnerKind
from shared.domain.errors import ConfigError, InvalidInput
from shared.runtimes import images
from shared.runtimes.base import (
    Edge,
    Fetch,
    TaskOutput,
    Work,
    check_dimensions,
    check_unicode,
    extras_allowed,
    parse_payload,
    token_bound,
)
from shared.runtimes.batching import MicroBatcher
from shared.runtimes.embeddings import encode_vector, output
from shared.runtimes.engines.onnx_clip import ClipRunner, Pixels
from shared.runtimes.engines.onnx_embeddings import Embedding
from shared.schemas.embeddings import EmbeddingsRequest
from shared.schemas.image_embeddings import ClipPayload, ImageEmbeddingInput
from shared.settings import Settings

Item = Any  # one run's input: Pixels (an image) or a tokenizers Encoding (a text)


class ClipRuntime:
    """The deployment's two towers; concurrent jobs' images and texts merged into fair micro-batches (see
    `EmbeddingsRuntime`), each weighed by its tokens."""

    def __init__(self, runner: ClipRunner, deployment: Deployment, settings: Settings) -> None:
        self.runner = runner
        self.deployment = deployment
        s = settings
        self.batcher: MicroBatcher[Item, Embedding] = MicroBatcher(
            runner.embed,
            s.max_batch_size,
            s.max_batch_wait_ms / 1000,
            s.batch_workers,
            cost=self._tokens,
            max_batch_cost=s.max_batch_tokens,
        )

    def _tokens(self, item: Item) -> int:
        return self.runner.image_tokens if isinstance(item, Pixels) else len(item.ids)

    def load(self) -> None:
        self.runner.load()
        expected = self.deployment.dimensions
        if expected is not None and expected != self.runner.dimensions:
            raise ConfigError(
                f"deployment {self.deployment.name}: dimensions = {expected}, but the model's projection_dim is "
                f"{self.runner.dimensions}"
            )

    def close(self) -> None:
        self.batcher.close()


def limits(settings: Settings) -> images.ImageLimits:
    return images.ImageLimits(settings.image_max_bytes, settings.image_max_side, settings.image_max_pixels)


def _image(value: str, i: int, settings: Settings, decode: Any) -> Any:
    """An input's image through `decode` (images.check or images.load), its errors naming the input."""
    loc = ("body", "input", i, "image")
    try:
        return decode(images.image_bytes(value, limits(settings), loc), limits(settings), loc)
    except InvalidInput as exc:  # the index in the message too: a failed job keeps only the message
        raise type(exc)(f"Input {i}: {exc.message}", loc=exc.loc) from None


def _check_text(text: Any, loc: tuple[str | int, ...], settings: Settings) -> None:
    if not isinstance(text, str):
        raise InvalidInput(
            "This model takes texts and images, not token arrays.", loc=loc, input=text[:16] if text else text
        )
    if not text.strip():
        raise InvalidInput("input strings must not be empty", loc=loc, input=text)
    if len(text) > settings.max_input_chars:
        raise InvalidInput(
            f"The text has {len(text)} characters; at most {settings.max_input_chars}.", loc=loc, input=len(text)
        )


def check(request: Any, deployment: Deployment, edge: Edge, decode: Any = images.check) -> dict[str, Any]:
    """The payload to queue (`ClipPayload`'s shape) for an image request, a text embeddings request sent to this
    deployment, or a queued payload; InvalidInput naming the parameter."""
    extras = extras_allowed(request, edge.extra)
    if extras and edge.extra == "pass-through":  # the towers take no extra parameters
        name = next(iter(extras))
        raise InvalidInput(
            f"Parameter '{name}' is not supported by model '{deployment.name}'.", loc=("body", name), input=extras[name]
        )
    inputs: Sequence[Any] = request.inputs if isinstance(request, EmbeddingsRequest) else request.input
    settings = edge.settings
    if not inputs:
        raise InvalidInput("input must not be empty", loc=("body", "input"), input=[])
    if len(inputs) > settings.max_inputs:
        raise InvalidInput(
            f"At most {settings.max_inputs} inputs per request; got {len(inputs)}.",
            loc=("body", "input"),
            input=len(inputs),
        )
    for i, item in enumerate(inputs):
        if isinstance(item, ImageEmbeddingInput):
            if decode is not None:  # the worker decodes its images as it runs them
                _image(item.image, i, settings, decode)
            if item.text is not None:
                _check_text(item.text, ("body", "input", i, "text"), settings)
        else:
            _check_text(item, ("body", "input", i), settings)
    check_dimensions(request.dimensions, deployment)
    payload: dict[str, Any] = request.model_dump(exclude_none=True, exclude=set(extras))
    payload["input"] = [x.model_dump(exclude_none=True) if isinstance(x, ImageEmbeddingInput) else x for x in inputs]
    check_unicode(payload)
    return payload


class ImageEmbeddingsKind:
    kind = RunnerKind.IMAGE_EMBEDDINGS
    cancellable = False
    deterministic_usage = True
    light_check = False  # it decodes the images

    def runtime(self, deployment: Deployment, fetch: Fetch, settings: Settings) -> ClipRuntime:
        threads = deployment.intra_op_threads or settings.intra_op_threads  # the concurrent runs share them
        runner = ClipRunner(fetch(deployment.model.files), deployment.max_tokens, threads)
        return ClipRuntime(runner, deployment, settings)

    def edge_tool(self, deployment: Deployment, fetch: Fetch) -> None:  # noqa: ARG002 (the protocol's)
        return None  # the edge checks images with Pillow alone: it never fetches the model

    def check(self, request: Any, deployment: Deployment, edge: Edge) -> dict[str, Any]:
        return check(request, deployment, edge)

    def estimate(self, deployment: Deployment, payload: dict[str, Any]) -> int:
        """What admission reserves (settled to the real count): `max_tokens` for an image, a text's bound."""
        inputs = payload.get("input", "")
        items = [inputs] if isinstance(inputs, str) else inputs if isinstance(inputs, list) else []
        total = 0
        for x in items:
            if isinstance(x, dict):
                text = x.get("text")
                total += deployment.max_tokens + (min(deployment.max_tokens, token_bound(text)) if text else 0)
            else:
                total += min(deployment.max_tokens, token_bound(x))
        return total

    def execute(self, work: Work, payload: dict[str, Any], runtime: ClipRuntime) -> TaskOutput:
        request: ClipPayload = parse_payload(ClipPayload, payload)
        check(request, work.deployment, Edge("error", work.settings), decode=None)
        runner = runtime.runner
        # Every text in input order (a text input, or an image's text), tokenized in one batch.
        texts = [x if isinstance(x, str) else x.text for x in request.input]
        encodings = iter(runner.tokenize([t for t in texts if t is not None]))
        items: list[Item] = []
        spans: list[int] = []  # how many items each input has: 1, or 2 for an image with its text
        for i, x in enumerate(request.input):
            if isinstance(x, str):
                items.append(next(encodings))
                spans.append(1)
                continue
            items.append(runner.pixels(_image(x.image, i, work.settings, images.load)))
            if x.text is not None:
                items.append(next(encodings))
            spans.append(1 + (x.text is not None))
        results = runtime.batcher(items, work.job.tenant)
        vectors, tokens, at = [], 0, 0
        for span in spans:
            parts = results[at : at + span]
            at += span
            v = np.sum([p.vector for p in parts], axis=0)
            unit = (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)
            embedding = Embedding(unit, sum(p.tokens for p in parts))
            vectors.append(encode_vector(embedding, request.encoding_format))
            tokens += embedding.tokens
        return output(work, vectors, tokens)

    def render(self, result: dict[str, Any]) -> Any:
        return result


KIND = ImageEmbeddingsKind()
