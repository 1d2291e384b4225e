"""Image embeddings through the real local host, the way users call it: azure-ai-inference's
`ImageEmbeddingsClient` with PNG and JPEG data URLs, texts of the same deployment through `/embeddings`, bad
images refused naming their input, and billing equal to the reported tokens."""

from __future__ import annotations

import base64
import io
import json
import math
import struct
import zlib

import numpy as np
import pytest
from azure.ai.inference import EmbeddingsClient, ImageEmbeddingsClient
from azure.ai.inference.models import EmbeddingEncodingFormat, ImageEmbeddingInput
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from PIL import Image
from tokenizers import Tokenizer

from tests.conftest import ADMIN_KEY, KEYS, ROOT, RunningHost, wait_for

pytestmark = pytest.mark.e2e

MODEL = "tiny-random-clip"
CLIP_DIR = ROOT / "config" / "demo" / "tiny-clip"
DIMENSIONS = 32
IMAGE_TOKENS = (32 // 8) ** 2 + 1  # the tiny model's (image_size / patch_size)² patches + the class token


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def data_url(data: bytes, fmt: str) -> str:
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(data).decode()}"


def picture(size: tuple[int, int] = (64, 48), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def unit(v: list[float]) -> np.ndarray:
    x = np.array(v)
    assert x.shape == (DIMENSIONS,) and math.isclose(float(np.linalg.norm(x)), 1.0, abs_tol=1e-5)
    return x


def text_tokens(text: str) -> int:
    return len(Tokenizer.from_file(str(CLIP_DIR / "tokenizer.json")).encode(text).ids)


def test_the_sdk_embeds_png_and_jpeg_data_urls_into_the_space_of_its_texts(host: RunningHost) -> None:
    png = data_url(encoded(picture(seed=1), "PNG"), "PNG")
    jpeg = data_url(encoded(picture((80, 120), seed=2), "JPEG"), "JPEG")
    credential = AzureKeyCredential(KEYS["acme"])
    with ImageEmbeddingsClient(endpoint=host.url, credential=credential) as client:
        result = client.embed(
            input=[ImageEmbeddingInput(image=png), ImageEmbeddingInput(image=jpeg), ImageEmbeddingInput(image=png)],
            model=MODEL,
        )
        paired = client.embed(input=[ImageEmbeddingInput(image=png, text="a photo of a cat")], model=MODEL)
    with host.client() as c:  # what get_model_info() reads, for this model
        assert c.get("/info", params={"model": MODEL}).json()["model_type"] == "image_embeddings"
    first, second, again = (unit(item.embedding) for item in result.data)
    assert np.array_equal(first, again)  # the same image, the same vector
    assert not np.allclose(first, second)
    assert result.usage.prompt_tokens == 3 * IMAGE_TOKENS == result.usage.total_tokens
    with EmbeddingsClient(endpoint=host.url, credential=credential) as texts:
        text = texts.embed(input=["a photo of a cat"], model=MODEL)
    caption = unit(text.data[0].embedding)
    assert text.usage.prompt_tokens == text_tokens("a photo of a cat")
    cosine = float(first @ caption)  # one space: a cosine between an image and a text
    assert -1.0 <= cosine <= 1.0 and cosine != 0.0
    # An image with its text is one vector, between the two, and counts both.
    pair = unit(paired.data[0].embedding)
    assert np.allclose(pair, (first + caption) / np.linalg.norm(first + caption), atol=1e-5)
    assert paired.usage.prompt_tokens == IMAGE_TOKENS + text_tokens("a photo of a cat")


def test_vectors_reproduce_transformers_for_the_same_image_and_texts(host: RunningHost) -> None:
    """`reference.json` is what transformers computed at build time: preprocessing, towers and pooling agree."""
    reference = json.loads((CLIP_DIR / "reference.json").read_text())
    size = reference["image"]["gradient_rgb_size"]
    yy, xx = np.mgrid[0:size, 0:size]
    rgb = np.stack([xx * 255 // (size - 1), yy * 255 // (size - 1), (xx + yy) * 255 // (2 * size - 2)], -1)
    png = data_url(encoded(Image.fromarray(rgb.astype(np.uint8), "RGB"), "PNG"), "PNG")
    with host.client() as c:
        image = c.post("/images/embeddings", json={"model": MODEL, "input": [{"image": png}]}).json()
        texts = c.post("/embeddings", json={"model": MODEL, "input": [t["text"] for t in reference["texts"]]}).json()
    assert np.allclose(image["data"][0]["embedding"], reference["image"]["embedding"], atol=1e-4)
    assert image["usage"]["prompt_tokens"] == reference["image"]["tokens"]
    for item, expected in zip(texts["data"], reference["texts"], strict=True):
        assert np.allclose(item["embedding"], expected["embedding"], atol=1e-4)
    assert texts["usage"]["prompt_tokens"] == sum(t["tokens"] for t in reference["texts"])


def test_async_202_and_quantized_formats_as_for_texts(host: RunningHost) -> None:
    png = data_url(encoded(picture((300, 200), seed=3), "PNG"), "PNG")  # > 47 KB: the payload is claim-checked
    assert len(png) > 47 * 1024
    body = {"model": MODEL, "input": [{"image": png}]}
    with host.client() as c:
        floats = c.post("/images/embeddings", json=body).json()["data"][0]["embedding"]
        accepted = c.post("/v1/images/embeddings", json=body, headers={"Prefer": "respond-async"})
        assert accepted.status_code == 202, accepted.text
        location = accepted.headers["Operation-Location"]
        wait_for(lambda: c.get(location).json()["status"] == "succeeded")
        assert c.get(location).json()["result"]["data"][0]["embedding"] == floats
        int8 = c.post("/images/embeddings", json={**body, "encoding_format": "int8"}).json()
        packed = c.post("/images/embeddings", json={**body, "encoding_format": "base64"}).json()
    assert int8["data"][0]["embedding"] == [round(127 * x) for x in floats]
    decoded = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, floats, atol=1e-6)


def truncated_png() -> str:
    data = encoded(picture(seed=4), "PNG")
    return data_url(data[: len(data) // 2], "PNG")


def bomb_png() -> str:
    """A 300-byte PNG whose header claims 100,000 × 100,000 pixels (all zeros, deflated)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * 100_000, 9)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    return data_url(data, "PNG")


BAD_IMAGES = {
    "truncated": (truncated_png, 422, "can't be decoded"),
    "truncated jpeg": (lambda: data_url(encoded(picture(seed=5), "JPEG")[:1200], "JPEG"), 422, "can't be decoded"),
    "wrong base64": (lambda: "data:image/png;base64,iVBORw0KGgo%%%notbase64", 422, "not valid base64"),
    "not a data URL": (lambda: "data:image/png,rawbytes", 422, "not a base64 data URL"),
    "unsupported format": (lambda: data_url(encoded(picture(seed=6), "BMP"), "bmp"), 422, "not a PNG, JPEG"),
    "oversized": (lambda: data_url(encoded(Image.new("L", (9000, 10)), "PNG"), "PNG"), 413, "9,000×10 pixels"),
    "decompression bomb": (bomb_png, 413, "10000000000 pixels"),
    "50 megapixels": (lambda: data_url(encoded(Image.new("L", (7100, 7100)), "PNG"), "PNG"), 413, "50410000 pixels"),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_a_bad_image_is_a_4xx_naming_its_input_and_the_host_keeps_serving(host: RunningHost, case: str) -> None:
    make, status, message = BAD_IMAGES[case]
    good = {"image": data_url(encoded(picture(seed=7), "PNG"), "PNG")}
    with host.client() as c:
        r = c.post("/images/embeddings", json={"model": MODEL, "input": [good, good, {"image": make()}]})
        assert r.status_code == status, r.text
        assert r.headers["x-ms-error-code"] == ("PayloadTooLarge" if status == 413 else "InvalidInput")
        error = r.json()["error"] if status == 413 else r.json()["detail"][0]
        assert error["loc"] == ["body", "input", 2, "image"]
        assert message in (error["message"] if status == 413 else error["msg"]) and "Input 2" in str(error)
        after = c.post("/images/embeddings", json={"model": MODEL, "input": [good]})
        assert after.status_code == 200, after.text
    with ImageEmbeddingsClient(endpoint=host.url, credential=AzureKeyCredential(KEYS["acme"])) as client:
        with pytest.raises(HttpResponseError) as raised:
            client.embed(input=[ImageEmbeddingInput(image=make())], model=MODEL)
    assert raised.value.status_code == status


def test_the_text_routes_reach_the_text_tower_and_refuse_what_it_cant_take(host: RunningHost) -> None:
    with host.client() as c:
        azure = c.post(f"/openai/deployments/{MODEL}/embeddings?api-version=2024-10-21", json={"input": "a cat"})
        assert azure.status_code == 200 and len(azure.json()["data"][0]["embedding"]) == DIMENSIONS
        tokens = c.post("/v1/embeddings", json={"model": MODEL, "input": [[0, 5, 1]]})
        assert tokens.status_code == 422 and tokens.json()["detail"][0]["loc"] == ["body", "input", 0]
        default = c.post("/embeddings", json={"input": "no model named"})  # still the first text model
        assert default.headers["azureml-model-deployment"] == "all-MiniLM-L6-v2"


def test_a_text_only_model_or_an_image_route_without_images_is_refused(host: RunningHost) -> None:
    with host.client() as c:
        wrong_kind = c.post("/images/embeddings", json={"model": "all-MiniLM-L6-v2", "input": [{"image": "x"}]})
        assert wrong_kind.status_code == 404 and "image_embeddings" in wrong_kind.text
        empty = c.post("/images/embeddings", json={"model": MODEL, "input": []})
        assert empty.status_code == 422
        dims = c.post("/images/embeddings", json={"model": MODEL, "input": [{"image": "x"}], "dimensions": 8})
        assert dims.status_code == 422


def billed(c: object, deployment: str) -> int:
    r = c.get("/usage", params={"from": "2000-01-01", "granularity": "month", "tenant": "globex"})  # type: ignore[attr-defined]
    assert r.status_code == 200, r.text
    return sum(i["tokens"] for i in r.json()["items"] if i["deployment"] == deployment)


def test_billing_equals_the_reported_prompt_tokens_to_the_token(host: RunningHost) -> None:
    png = data_url(encoded(picture(seed=8), "PNG"), "PNG")
    jpeg = data_url(encoded(picture((50, 50), seed=9), "JPEG"), "JPEG")
    reported = 0
    with ImageEmbeddingsClient(endpoint=host.url, credential=AzureKeyCredential(KEYS["globex"])) as client:
        for inputs in (
            [ImageEmbeddingInput(image=png)],
            [ImageEmbeddingInput(image=jpeg, text="a diagram with arrows"), ImageEmbeddingInput(image=png)],
        ):
            result = client.embed(input=inputs, model=MODEL, encoding_format=EmbeddingEncodingFormat.FLOAT)
            reported += result.usage.prompt_tokens
    with EmbeddingsClient(endpoint=host.url, credential=AzureKeyCredential(KEYS["globex"])) as texts:
        reported += texts.embed(input=["a close up photo of a flower"], model=MODEL).usage.prompt_tokens
    assert reported == 3 * IMAGE_TOKENS + text_tokens("a diagram with arrows") + text_tokens(
        "a close up photo of a flower"
    )
    with host.client(ADMIN_KEY) as admin:
        wait_for(lambda: billed(admin, MODEL) == reported)
