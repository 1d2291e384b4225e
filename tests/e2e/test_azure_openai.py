"""The client code people already have, pointed at the real local host: `openai.AzureOpenAI` (its
`/openai/deployments/{name}/...?api-version=` routes) and `openai.OpenAI` with a `base_url` ending in /v1."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import openai
import pytest
from openai import AzureOpenAI, OpenAI

from tests.conftest import KEYS, RunningHost, start_host, stop_host, write_config
from tests.e2e.test_endpoints import ENDPOINTS

pytestmark = pytest.mark.e2e
EMBED = "all-MiniLM-L6-v2"
CHAT = "tiny-random-chat"
API_VERSION = "2024-10-21"
STORY = [{"role": "user", "content": "Tell me a story"}]  # greedy: hundreds of tokens before an EOS
TEXTS = ["A man is eating food.", "Someone is having a meal."]


@pytest.fixture
def azure(host: RunningHost) -> Iterator[AzureOpenAI]:
    with AzureOpenAI(azure_endpoint=host.url, api_key=KEYS["acme"], api_version=API_VERSION, max_retries=0) as c:
        yield c


@pytest.fixture
def v1(host: RunningHost) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{host.url}/v1", api_key=KEYS["acme"], max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def endpoints_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    """Endpoints "embed" (minilm-blue/green, mirrored to minilm-shadow) and "chat" (tiny-a/b)."""
    tmp = tmp_path_factory.mktemp("azure-endpoints")
    running = start_host(tmp, env={"INFERQ_ROUTING_SEED": "7"}, config=write_config(tmp / "e.toml", after=ENDPOINTS))
    yield running
    stop_host(running)


def native_embeddings(host: RunningHost) -> dict:
    with host.client() as c:
        r = c.post("/embeddings", json={"model": EMBED, "input": TEXTS})
    assert r.status_code == 200, r.text
    return r.json()


def test_azure_openai_embeds_on_its_deployment_route_as_the_native_route_does(
    host: RunningHost, azure: AzureOpenAI
) -> None:
    raw = azure.embeddings.with_raw_response.create(model=EMBED, input=TEXTS)
    assert raw.http_request.url.path == f"/openai/deployments/{EMBED}/embeddings"
    assert raw.http_request.url.params["api-version"] == API_VERSION and "api-key" in raw.http_request.headers
    got, native = raw.parse(), native_embeddings(host)
    assert [len(d.embedding) for d in got.data] == [384, 384]
    assert np.allclose([d.embedding for d in got.data], [d["embedding"] for d in native["data"]], atol=1e-6)
    assert got.usage.prompt_tokens == native["usage"]["prompt_tokens"] and got.model == EMBED


def test_azure_openai_chats_streams_and_completes(azure: AzureOpenAI) -> None:
    greedy = {"model": CHAT, "messages": STORY, "max_tokens": 12, "temperature": 0, "seed": 3}
    whole = azure.chat.completions.create(**greedy)  # type: ignore[call-overload]
    assert whole.object == "chat.completion" and whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == 12 and whole.choices[0].message.content
    chunks = list(azure.chat.completions.create(**greedy, stream=True))  # type: ignore[call-overload]
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content  # the same greedy text, token by token
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    text = azure.completions.create(model=CHAT, prompt="Once upon a time", max_tokens=5, temperature=0)
    assert text.object == "text_completion" and text.usage is not None and text.usage.completion_tokens == 5


def test_azure_openai_errors_are_the_sdk_errors_with_the_code_in_the_header(host: RunningHost) -> None:
    with AzureOpenAI(azure_endpoint=host.url, api_key="wrong", api_version=API_VERSION, max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError) as denied:
            wrong.embeddings.create(model=EMBED, input="x")
    assert denied.value.response.headers["x-ms-error-code"] == "Unauthorized"
    with AzureOpenAI(azure_endpoint=host.url, api_key=KEYS["acme"], api_version=API_VERSION, max_retries=0) as ok:
        with pytest.raises(openai.NotFoundError) as unknown:
            ok.chat.completions.create(model="nope", messages=STORY)  # type: ignore[arg-type]
        with pytest.raises(openai.NotFoundError) as other_kind:
            ok.chat.completions.create(model=EMBED, messages=STORY)  # type: ignore[arg-type]
    assert "Unknown model 'nope'" in unknown.value.message
    assert other_kind.value.response.headers["x-ms-error-code"] == "NotFound"
    assert "is of type embeddings; this route serves chat_completion models" in other_kind.value.message


def test_openai_with_a_v1_base_url_embeds_chats_streams_and_lists_models(host: RunningHost, v1: OpenAI) -> None:
    raw = v1.embeddings.with_raw_response.create(model=EMBED, input=TEXTS)
    assert raw.http_request.url.path == "/v1/embeddings"
    native = native_embeddings(host)
    assert np.allclose([d.embedding for d in raw.parse().data], [d["embedding"] for d in native["data"]], atol=1e-6)
    reply = v1.chat.completions.create(model=CHAT, messages=STORY, max_tokens=6)  # type: ignore[arg-type]
    assert reply.usage is not None and reply.usage.completion_tokens == 6
    chunks = list(v1.chat.completions.create(model=CHAT, messages=STORY, max_tokens=6, stream=True))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert {m.id for m in v1.models.list()} >= {EMBED, CHAT, "linear-scorer"}


def test_a_model_is_retrieved_by_its_id(host: RunningHost, v1: OpenAI) -> None:
    model = v1.models.retrieve(CHAT.upper())  # names are matched as everywhere: case-insensitively
    assert (model.id, model.object, model.owned_by) == (CHAT, "model", "inferq")
    with host.client() as c:
        listed = {m["id"]: m for m in c.get("/models").json()["data"]}
        direct = c.get(f"/models/{EMBED}")
        assert direct.status_code == 200 and direct.json() == listed[EMBED]
        missing = c.get("/models/nope")
        assert c.get(f"/models/{EMBED}", headers={"api-key": "wrong"}).status_code == 401
    assert missing.status_code == 404 and missing.headers["x-ms-error-code"] == missing.json()["error"]["code"]
    assert "Unknown model 'nope'" in missing.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError):
        v1.models.retrieve("nope")


def test_the_deployment_path_names_an_endpoint_or_a_deployment_behind_one(endpoints_host: RunningHost) -> None:
    def served(client: AzureOpenAI, model: str, **create: object) -> tuple[str, str]:
        api = client.embeddings if "input" in create else client.chat.completions
        raw = api.with_raw_response.create(model=model, **create)  # type: ignore[attr-defined]
        with endpoints_host.client() as c:
            job = c.get(f"/jobs/{raw.headers['x-inferq-job-id']}").json()
        assert raw.headers["azureml-model-deployment"] == job["deployment"]
        return job["endpoint"], job["deployment"]

    url, key = endpoints_host.url, KEYS["acme"]
    with AzureOpenAI(azure_endpoint=url, api_key=key, api_version=API_VERSION, max_retries=0) as client:
        by_endpoint = {served(client, "embed", input="x") for _ in range(12)}
        pinned = {served(client, "MINILM-green", input="x") for _ in range(4)}
        chat = served(client, "tiny-b", messages=STORY, max_tokens=2)
    assert by_endpoint == {("embed", "minilm-blue"), ("embed", "minilm-green")}  # the traffic split
    assert pinned == {("embed", "minilm-green")} and chat == ("chat", "tiny-b")
