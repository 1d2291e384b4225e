"""Quantized encodings (int8, uint8, binary, ubinary) and token-array inputs, through the real local host and
model, over HTTP and with the SDKs that take them."""

import httpx
import numpy as np
import pytest
from azure.ai.inference import EmbeddingsClient
from azure.ai.inference.models import EmbeddingEncodingFormat
from azure.core.credentials import AzureKeyCredential
from openai import OpenAI
from tokenizers import Tokenizer

from tests.conftest import KEYS, MODEL_DIR, RunningHost, wait_for

pytestmark = pytest.mark.e2e

TEXTS = [
    "A man is eating food.",
    "The stock market fell sharply today after the announcement.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "How do I reset my password?",
    "Le chat est assis sur le tapis.",
    "Rain is expected throughout the weekend in the northern regions.",
    "The quick brown fox jumps over the lazy dog.",
    "Quantized embeddings cut the memory of a vector index by four to thirty-two times.",
    "She plays the violin in the city orchestra every Sunday.",
    "Error 404: the page you requested could not be found.",
    "Mount Everest is the highest mountain above sea level.",
    "Add two cups of flour and a pinch of salt, then stir.",
]


def embed(c: httpx.Client, body: dict) -> dict:
    r = c.post("/embeddings", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def token_ids(texts: list[str]) -> list[list[int]]:
    tokenizer = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    tokenizer.no_padding()
    return [tokenizer.encode(t).ids for t in texts]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_quantized_encodings_have_the_documented_types_and_lengths(host: RunningHost) -> None:
    with host.client() as c:
        floats = [np.array(d["embedding"]) for d in embed(c, {"input": TEXTS})["data"]]
        got = {f: embed(c, {"input": TEXTS, "encoding_format": f}) for f in ("int8", "uint8", "binary", "ubinary")}
    for fmt, body in got.items():
        assert body["usage"]["prompt_tokens"] == sum(len(ids) for ids in token_ids(TEXTS)), fmt
        for item in body["data"]:
            assert all(type(x) is int for x in item["embedding"]), fmt
    for i, v in enumerate(floats):
        int8 = got["int8"]["data"][i]["embedding"]
        uint8 = got["uint8"]["data"][i]["embedding"]
        binary = got["binary"]["data"][i]["embedding"]
        ubinary = got["ubinary"]["data"][i]["embedding"]
        assert len(int8) == len(uint8) == 384 and len(binary) == len(ubinary) == 48  # 8 dimensions per byte
        assert min(int8) >= -127 and max(int8) <= 127 and [x + 128 for x in int8] == uint8
        assert min(binary) >= -128 and max(ubinary) <= 255 and [x + 128 for x in binary] == ubinary
        # The documented scale: int8 = round(127·x), so int8/127 is the vector to within half a step.
        assert np.abs(np.array(int8) / 127 - v).max() <= 0.5 / 127 + 1e-6
        assert cosine(np.array(int8, dtype=float), v) >= 0.99
        # ubinary bits, first dimension in the high bit, are the signs of the float vector.
        bits = np.unpackbits(np.array(ubinary, dtype=np.uint8))
        assert (bits == (v > 0)).all()


def test_the_azure_sdk_asks_for_quantized_encodings(host: RunningHost) -> None:
    with EmbeddingsClient(endpoint=host.url, credential=AzureKeyCredential(KEYS["acme"])) as client:
        int8 = client.embed(input=TEXTS[:2], encoding_format=EmbeddingEncodingFormat.INT8)
        binary = client.embed(input=TEXTS[:2], encoding_format=EmbeddingEncodingFormat.UBINARY)
        floats = client.embed(input=TEXTS[:2])
    for q, b, f in zip(int8.data, binary.data, floats.data, strict=True):
        assert len(q.embedding) == 384 and all(isinstance(x, int) for x in q.embedding)
        assert cosine(np.array(q.embedding, dtype=float), np.array(f.embedding)) >= 0.99
        assert len(b.embedding) == 48 and all(0 <= x <= 255 for x in b.embedding)


def test_the_openai_sdk_passes_other_encodings_through(host: RunningHost) -> None:
    # Its type says float | base64, but it sends what it is given; its model reads the ints back as floats.
    with OpenAI(base_url=host.url, api_key=KEYS["acme"]) as openai:
        fmt = "int8"
        r = openai.embeddings.create(input=TEXTS[0], model="all-MiniLM-L6-v2", encoding_format=fmt)  # type: ignore[arg-type]
    with host.client() as c:
        sent = embed(c, {"input": TEXTS[0], "encoding_format": "int8"})["data"][0]["embedding"]
    assert r.data[0].embedding == sent and len(sent) == 384


def test_token_arrays_embed_as_the_text_they_came_from_and_bill_their_length(host: RunningHost) -> None:
    ids = token_ids(TEXTS[:4])
    with host.client(KEYS["globex"]) as c:  # no other test here bills globex
        texts = embed(c, {"input": TEXTS[:4]})
        arrays = embed(c, {"input": ids})
        one = embed(c, {"input": ids[0]})
        bare = embed(c, {"input": ids[1][1:-1]})  # no [CLS]/[SEP]: embedded and counted as given
        for a, b in zip(texts["data"], arrays["data"], strict=True):
            assert np.allclose(a["embedding"], b["embedding"], atol=1e-5)
        assert np.allclose(one["data"][0]["embedding"], texts["data"][0]["embedding"], atol=1e-5)
        assert arrays["usage"]["prompt_tokens"] == texts["usage"]["prompt_tokens"] == sum(map(len, ids))
        assert one["usage"]["prompt_tokens"] == len(ids[0]) and bare["usage"]["prompt_tokens"] == len(ids[1]) - 2
        billed = 2 * sum(map(len, ids)) + len(ids[0]) + len(ids[1]) - 2

        def total() -> int:
            r = c.get("/usage", params={"from": "2000-01-01", "granularity": "month"})
            return int(r.json()["total_tokens"])

        wait_for(lambda: total() == billed)


def test_the_openai_sdk_sends_token_arrays(host: RunningHost) -> None:
    ids = token_ids(TEXTS[4:6])
    with OpenAI(base_url=host.url, api_key=KEYS["acme"]) as openai:
        arrays = openai.embeddings.create(input=ids, model="all-MiniLM-L6-v2")
        texts = openai.embeddings.create(input=TEXTS[4:6], model="all-MiniLM-L6-v2")
    for a, b in zip(arrays.data, texts.data, strict=True):
        assert np.allclose(a.embedding, b.embedding, atol=1e-5)
    assert arrays.usage.prompt_tokens == sum(map(len, ids))


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"input": [[]]}, ["body", "input", 0]),
        ({"input": [[101, 102], []]}, ["body", "input", 1]),
        ({"input": [101, 30522, 102]}, ["body", "input", 0]),  # the vocabulary is ids 0 to 30521
        ({"input": [[101, -1, 102]]}, ["body", "input", 0]),
        ({"input": [[101, 2**63, 102]]}, ["body", "input", 0]),
        ({"input": [101] + [1000] * 255 + [102]}, ["body", "input", 0]),  # 257 > max_tokens 256
        ({"input": [[101, 102]] * 2049}, ["body", "input"]),
        ({"input": [101, "a"]}, None),
        ({"input": [[101], "a"]}, None),
        ({"input": [True, False]}, None),
        ({"input": "x", "encoding_format": "int4"}, ["body", "encoding_format"]),
    ],
)
def test_bad_token_arrays_are_422_naming_the_input(host: RunningHost, body: dict, loc: list | None) -> None:
    with host.client() as c:
        r = c.post("/embeddings", json=body)
        assert r.status_code == 422, r.text
        if loc is not None:
            assert loc in [d["loc"] for d in r.json()["detail"]]
        assert c.post("/embeddings", json={"input": [101, 102]}).status_code == 200  # still serving
