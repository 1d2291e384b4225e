"""The image-embeddings kind's pure parts: routing (its text tower answers the text routes, never the reverse, and
no default moves), the estimate admission reserves, and CLIPImageProcessor's resize-and-crop arithmetic."""

from __future__ import annotations

import io
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, WebPImagePlugin

from shared.domain.config import RunnerKind, load_config
from shared.domain.errors import NotFound
from shared.domain.routing import Router
from shared.runtimes import images
from shared.runtimes.engines.onnx_clip import Preprocessor
from shared.runtimes.image_embeddings import KIND
from tests.conftest import write_config


@pytest.fixture
def router(tmp_path: Path) -> Router:
    return Router(load_config(write_config(tmp_path / "c.toml")))


def test_a_clip_deployment_serves_images_and_the_text_routes_and_nothing_moves_the_defaults(router: Router) -> None:
    assert router.route("tiny-random-clip", None, RunnerKind.IMAGE_EMBEDDINGS).deployment.name == "tiny-random-clip"
    assert router.route("TINY-random-clip", None, RunnerKind.EMBEDDINGS).deployment.name == "tiny-random-clip"
    assert router.route(None, None, RunnerKind.EMBEDDINGS).deployment.name == "all-MiniLM-L6-v2"
    assert router.route(None, None, RunnerKind.IMAGE_EMBEDDINGS).deployment.name == "tiny-random-clip"
    with pytest.raises(NotFound, match="image_embeddings"):
        router.route("all-MiniLM-L6-v2", None, RunnerKind.IMAGE_EMBEDDINGS)
    with pytest.raises(NotFound):
        router.route("tiny-random-clip", None, RunnerKind.CHAT)


def test_admission_reserves_max_tokens_an_image_and_a_bound_a_text(router: Router) -> None:
    clip = router.describe("tiny-random-clip", None)
    payload = {"input": [{"image": "x"}, {"image": "x", "text": "a cat"}, "hello"]}
    assert KIND.estimate(clip, payload) == 77 + (77 + 5 + 2) + (5 + 2)
    assert KIND.estimate(clip, {"input": "hello"}) == 7


@pytest.mark.parametrize(
    ("size", "resized"), [((300, 200), (336, 224)), ((200, 300), (224, 336)), ((224, 224), (224, 224))]
)
def test_the_shortest_side_is_resized_then_the_center_cropped(size: tuple[int, int], resized: tuple[int, int]) -> None:
    preprocess = Preprocessor(
        resize={"shortest_edge": 224},
        resample="BICUBIC",
        crop=(224, 224),
        rescale=1 / 255,
        mean=np.full((3, 1, 1), 0.5, np.float32),
        std=np.full((3, 1, 1), 0.25, np.float32),
    )
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    assert preprocess._size(*size) == resized
    expected = np.asarray(image.resize(resized, Image.Resampling.BICUBIC), np.float32)
    top, left = (resized[1] - 224) // 2, (resized[0] - 224) // 2  # transformers' center_crop
    expected = (expected[top : top + 224, left : left + 224] / 255 - 0.5) / 0.25
    pixels = preprocess(image).values
    assert pixels.shape == (3, 224, 224) and pixels.dtype == np.float32
    assert np.allclose(pixels, expected.transpose(2, 0, 1), atol=1e-5)


def test_the_edge_decodes_no_more_images_at_once_than_there_are_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst of WebP images (a frame is decoded whole at the edge) holds at most `cores` decodes in memory."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buffer, "WEBP")
    data = buffer.getvalue()
    limits = images.ImageLimits(max_bytes=1_000_000, max_side=1_024, max_pixels=1_048_576)
    running, most, lock = 0, 0, threading.Lock()
    real_load = WebPImagePlugin.WebPImageFile.load

    def load(self: WebPImagePlugin.WebPImageFile) -> object:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)  # a slow decode, so that the burst overlaps
        try:
            return real_load(self)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(WebPImagePlugin.WebPImageFile, "load", load)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: images.check(data, limits, ("body", "input", i, "image")), range(32)))
    assert results == [("WEBP", 64, 64)] * 32
    assert 1 <= most <= (os.cpu_count() or 1)
