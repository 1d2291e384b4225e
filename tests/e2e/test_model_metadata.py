"""Metadata and errors as the azure-ai-inference SDK reads them, against the real local host: `get_model_info()`'s
`ModelType`, a modality the model doesn't serve (404), the default model of the route's kind, `x-ms-error-code`,
and the `extra-parameters` header in any case."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.ai.inference import ChatCompletionsClient, EmbeddingsClient
from azure.ai.inference.models import ModelType, UserMessage
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from tests.conftest import KEYS, RunningHost

pytestmark = pytest.mark.e2e
EMBED = "all-MiniLM-L6-v2"
CHAT = "tiny-random-chat"
STORY = [{"role": "user", "content": "Tell me a story"}]


@pytest.fixture
def chat(host: RunningHost) -> Iterator[ChatCompletionsClient]:
    with ChatCompletionsClient(endpoint=host.url, credential=AzureKeyCredential(KEYS["acme"])) as client:
        yield client


@pytest.fixture
def embed(host: RunningHost) -> Iterator[EmbeddingsClient]:
    with EmbeddingsClient(endpoint=host.url, credential=AzureKeyCredential(KEYS["acme"])) as client:
        yield client


def test_get_model_info_answers_the_sdks_model_types(
    host: RunningHost, chat: ChatCompletionsClient, embed: EmbeddingsClient
) -> None:
    chat_info = chat.get_model_info(params={"model": CHAT})
    assert chat_info.model_type == ModelType.CHAT_COMPLETION and chat_info.model_name == CHAT
    assert embed.get_model_info().model_type == ModelType.EMBEDDINGS
    with host.client() as c:
        listed = {m["id"]: m["model_type"] for m in c.get("/models").json()["data"]}
        score = c.get("/info", params={"model": "linear-scorer"}).json()
    assert listed[CHAT] == "chat_completion" and listed[EMBED] == "embeddings"
    # A scoring script is none of the SDK's types: it answers its own kind (see the README).
    assert score["model_type"] == listed["linear-scorer"] == "score"
    assert score["model_type"] not in {t.value for t in ModelType}


def test_chat_to_an_embeddings_model_is_404_with_the_code_in_body_and_header(chat: ChatCompletionsClient) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        chat.complete(messages=[UserMessage("hi")], model=EMBED)
    error = caught.value
    assert error.status_code == 404 and error.error is not None and error.error.code == "NotFound"
    assert error.response is not None and error.response.headers["x-ms-error-code"] == "NotFound"
    assert error.error.message == f"Model '{EMBED}' is of type embeddings; this route serves chat_completion models."


def test_without_model_each_route_reaches_the_first_model_of_its_kind(
    host: RunningHost, chat: ChatCompletionsClient, embed: EmbeddingsClient
) -> None:
    reply = chat.complete(messages=[UserMessage("hi")], max_tokens=3)  # the default endpoint serves embeddings
    assert reply.model == CHAT and reply.usage.completion_tokens <= 3
    assert embed.embed(input=["x"]).model == EMBED
    with host.client() as c:
        text = c.post("/completions", json={"prompt": "x", "max_tokens": 2})
        scored = c.post("/score", json={"data": [[1, 2, 3]]})
    assert text.status_code == 200 and text.json()["model"] == CHAT, text.text
    assert scored.status_code == 200 and scored.headers["azureml-model-deployment"] == "linear-scorer", scored.text


def test_every_error_carries_its_code_in_x_ms_error_code(host: RunningHost, chat: ChatCompletionsClient) -> None:
    with ChatCompletionsClient(endpoint=host.url, credential=AzureKeyCredential("wrong")) as wrong:
        with pytest.raises(ClientAuthenticationError) as denied:
            wrong.complete(messages=[UserMessage("hi")], model=CHAT)
    with pytest.raises(HttpResponseError) as invalid:
        chat.complete(messages=[UserMessage("hi")], model=CHAT, max_tokens=-1)
    for caught, code in ((denied, "Unauthorized"), (invalid, "InvalidInput")):
        assert caught.value.response is not None and caught.value.response.headers["x-ms-error-code"] == code
    assert denied.value.error is not None and denied.value.error.code == "Unauthorized"
    with host.client() as c:
        done = c.post("/embeddings", json={"input": "x"}).headers["x-inferq-job-id"]
        responses = [
            c.get("/jobs/job_" + "0" * 32),  # 404 from the domain
            c.delete(f"/jobs/{done}"),  # 409: a finished job's own error shape
            c.put("/embeddings"),  # 405 from the router
            c.post("/embeddings", content=b"{", headers={"content-type": "application/json"}),  # 422 `detail`
            c.post("/score", json={"data": 1}, headers={"azureml-model-deployment": "nope"}),
        ]
    for r in responses:
        body = r.json()
        code = body["error"]["code"] if "error" in body else "InvalidInput"
        assert r.status_code >= 400 and r.headers["x-ms-error-code"] == code, (r.status_code, r.headers, body)
    assert [r.status_code for r in responses] == [404, 409, 405, 422, 404]


@pytest.mark.parametrize("mode", ["Pass-Through", "PASS-THROUGH", "pass-through"])
def test_the_extra_parameters_header_is_read_in_any_case(host: RunningHost, mode: str) -> None:
    body = {"model": CHAT, "messages": STORY, "max_tokens": 2, "top_k": 5}
    with host.client() as c:
        passed = c.post("/chat/completions", json=body, headers={"extra-parameters": mode})
        dropped = c.post("/chat/completions", json={**body, "mirostat": 2}, headers={"extra-parameters": "Drop"})
        refused = c.post("/chat/completions", json=body, headers={"extra-parameters": "maybe"})
    assert passed.status_code == dropped.status_code == 200, (passed.text, dropped.text)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["header", "extra-parameters"]
