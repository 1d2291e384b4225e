"""The embeddings API through the real local host, the way users call it."""

import base64
import math

import numpy as np
import pytest
from azure.ai.inference import EmbeddingsClient
from azure.core.credentials import AzureKeyCredential
from openai import OpenAI
from tokenizers import Tokenizer

from tests.conftest import KEYS, MODEL_DIR, RunningHost, wait_for

pytestmark = pytest.mark.e2e


def vectors(body: dict) -> list[np.ndarray]:
    return [np.array(item["embedding"]) for item in body["data"]]


def test_sync_request_returns_unit_vectors_and_exact_token_usage(host: RunningHost) -> None:
    texts = ["A man is eating food.", "Someone is having a meal.", "The stock market fell sharply today."]
    with host.client() as c:
        r = c.post("/embeddings", json={"input": texts, "model": "all-MiniLM-L6-v2"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "all-MiniLM-L6-v2"
    a, b, unrelated = vectors(body)
    for v in (a, b, unrelated):
        assert v.shape == (384,) and math.isclose(float(np.linalg.norm(v)), 1.0, abs_tol=1e-5)
    assert float(a @ b) > float(a @ unrelated)
    tokenizer = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    tokenizer.no_padding()
    expected = sum(len(tokenizer.encode(t).ids) for t in texts)
    assert body["usage"] == {"prompt_tokens": expected, "total_tokens": expected}
    assert r.headers["azureml-model-deployment"] == "all-MiniLM-L6-v2"


def test_async_request_returns_202_then_the_result_at_the_job_url(host: RunningHost) -> None:
    with host.client() as c:
        r = c.post("/embeddings", json={"input": "async please"}, headers={"Prefer": "respond-async"})
        assert r.status_code == 202, r.text
        location = r.headers["Operation-Location"]
        assert location == f"/jobs/{r.json()['id']}" and int(r.headers["Retry-After"]) >= 1
        wait_for(lambda: c.get(location).json()["status"] == "succeeded")
        job = c.get(location).json()
        (v,) = vectors(job["result"])
        assert v.shape == (384,) and math.isclose(float(np.linalg.norm(v)), 1.0, abs_tol=1e-5)
        assert job["finished_at"] >= job["started_at"] >= job["created_at"]
        assert c.delete(location).status_code == 409  # finished jobs can't be cancelled


def test_base64_encoding_matches_float(host: RunningHost) -> None:
    with host.client() as c:
        plain = c.post("/embeddings", json={"input": "same text"}).json()
        packed = c.post("/embeddings", json={"input": "same text", "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, plain["data"][0]["embedding"], atol=1e-6)


def test_the_sdks_users_already_have_work_unchanged(host: RunningHost) -> None:
    with EmbeddingsClient(endpoint=host.url, credential=AzureKeyCredential(KEYS["acme"])) as client:
        result = client.embed(input=["first phrase", "second phrase"], model="all-MiniLM-L6-v2")
    assert len(result.data) == 2 and len(result.data[0].embedding) == 384
    assert result.usage.prompt_tokens > 0
    with OpenAI(base_url=host.url, api_key=KEYS["acme"]) as openai:
        response = openai.embeddings.create(input="hello from openai", model="all-minilm-l6-v2")
    assert len(response.data[0].embedding) == 384  # base64 by default in the openai client, decoded by it


def test_an_idempotency_key_returns_the_existing_job(host: RunningHost) -> None:
    with host.client() as c:
        headers = {"Idempotency-Key": "order-42", "Prefer": "respond-async"}
        first = c.post("/embeddings", json={"input": "once"}, headers=headers)
        again = c.post("/embeddings", json={"input": "once"}, headers=headers)
        assert first.json()["id"] == again.json()["id"]
        different = c.post("/embeddings", json={"input": "twice"}, headers=headers)
        assert different.status_code == 409
    with host.client(KEYS["globex"]) as other:  # the same key from another tenant is another job
        assert other.post("/embeddings", json={"input": "once"}, headers=headers).json()["id"] != first.json()["id"]


def test_a_tenant_never_sees_another_tenants_job(host: RunningHost) -> None:
    with host.client() as acme, host.client(KEYS["globex"]) as globex:
        job_id = acme.post("/embeddings", json={"input": "mine"}, headers={"Prefer": "respond-async"}).json()["id"]
        assert globex.get(f"/jobs/{job_id}").status_code == 404
        assert globex.delete(f"/jobs/{job_id}").status_code == 404
        assert acme.get(f"/jobs/{job_id}").status_code == 200


def test_info_models_and_health(host: RunningHost) -> None:
    with host.client() as c:
        assert c.get("/info").json() == {
            "model_name": "all-MiniLM-L6-v2",
            "model_type": "embeddings",
            "model_provider_name": "sentence-transformers",
        }
        assert (
            c.get("/info", params={"model": "ALL-MINILM-L6-V2", "api-version": "2024-05-01-preview"}).status_code == 200
        )
        models = c.get("/models").json()
        assert models["object"] == "list" and models["data"][0]["id"] == "all-MiniLM-L6-v2"
    with host.client(key=None) as anonymous:
        assert anonymous.get("/health").json() == {"status": "ok"}
        assert anonymous.get("/info").status_code == 401


def test_bearer_tokens_are_accepted(host: RunningHost) -> None:
    with host.client(key=None) as c:
        r = c.post("/embeddings", json={"input": "bearer"}, headers={"Authorization": f"Bearer {KEYS['acme']}"})
    assert r.status_code == 200
