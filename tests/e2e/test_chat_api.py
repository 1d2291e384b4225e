"""Chat and text completions through the real local host, with the SDKs users have (azure-ai-inference,
openai) and plain HTTP, on the tiny random-weight model (its text is gibberish; its shape and counts are not)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from azure.ai.inference import ChatCompletionsClient
from azure.ai.inference.models import SystemMessage, UserMessage
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from openai import OpenAI

from tests.conftest import KEYS, RunningHost

pytestmark = pytest.mark.e2e
MODEL = "tiny-random-chat"
STORY = [{"role": "user", "content": "Tell me a story"}]  # greedy: hundreds of tokens before an EOS


@pytest.fixture
def openai_client(host: RunningHost) -> Iterator[OpenAI]:
    with OpenAI(base_url=host.url, api_key=KEYS["acme"], max_retries=0) as client:  # closed: no stray sockets
        yield client


@pytest.fixture
def azure_chat(host: RunningHost) -> Iterator[ChatCompletionsClient]:
    with ChatCompletionsClient(endpoint=host.url, credential=AzureKeyCredential(KEYS["acme"])) as client:
        yield client


def test_azure_ai_inference_client_gets_a_well_formed_chat_completion(
    host: RunningHost, azure_chat: ChatCompletionsClient
) -> None:
    client = azure_chat
    result = client.complete(
        messages=[SystemMessage("You are terse."), UserMessage("Tell me a story")],
        model=MODEL,
        max_tokens=16,
        temperature=0,
        seed=1,
    )
    assert result.model == MODEL and result.id.startswith("job_") and result.created.year >= 2024
    (choice,) = result.choices
    assert choice.index == 0 and choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == "length" and result.usage.completion_tokens == 16
    assert result.usage.total_tokens == result.usage.prompt_tokens + 16


def test_azure_ai_inference_client_streams(host: RunningHost, azure_chat: ChatCompletionsClient) -> None:
    client = azure_chat
    updates = list(client.complete(messages=[UserMessage("Tell me a story")], model=MODEL, max_tokens=40, stream=True))
    text = "".join(u.choices[0].delta.content or "" for u in updates if u.choices)
    assert text and updates[-1].choices[0].finish_reason == "length"


def test_openai_greedy_with_a_seed_gives_the_same_text_twice_within_max_tokens(
    host: RunningHost, openai_client: OpenAI
) -> None:
    client = openai_client
    first, second = (
        client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=24, temperature=0, seed=5)  # type: ignore[arg-type]
        for _ in range(2)
    )
    assert first.object == "chat.completion" and first.choices[0].message.content
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage is not None and first.usage.completion_tokens == 24
    assert first.choices[0].finish_reason == "length"
    short = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hello, who are you?"}],  # greedy: an EOS after 18 tokens
        max_tokens=100,
        temperature=0,
    )
    assert short.usage is not None and short.usage.completion_tokens < 100
    assert short.choices[0].finish_reason == "stop"


def test_openai_text_completion(host: RunningHost, openai_client: OpenAI) -> None:
    result = openai_client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8, temperature=0)
    assert result.object == "text_completion" and result.choices[0].text
    assert result.choices[0].finish_reason == "length" and result.usage is not None
    assert result.usage.completion_tokens == 8


def test_stop_sequences_are_cut_from_the_output(host: RunningHost, openai_client: OpenAI) -> None:
    client = openai_client
    full = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=40, temperature=0)
    text = full.choices[0].text
    stop = text[10:13]
    cut = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=40, temperature=0, stop=[stop])
    assert cut.choices[0].text == text[: text.index(stop)] and cut.choices[0].finish_reason == "stop"


def test_openai_streaming_yields_chunks_and_one_usage_chunk(host: RunningHost, openai_client: OpenAI) -> None:
    client = openai_client
    kwargs: dict[str, Any] = {"model": MODEL, "messages": STORY, "max_tokens": 60, "temperature": 0}
    whole = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) >= 2 and "".join(content) == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1] and with_usage[0].choices == []
    assert with_usage[0].usage is not None and with_usage[0].usage.completion_tokens == 60
    plain = list(client.chat.completions.create(**kwargs, stream=True))
    assert all(c.usage is None for c in plain)  # no usage chunk unless asked


def test_the_stream_ends_with_done(host: RunningHost) -> None:
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 20, "stream": True}
    with host.client() as c, c.stream("POST", "/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["azureml-model-deployment"] == MODEL
        events = [line.removeprefix("data: ") for line in r.iter_lines() if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def detail(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 422, r.text
    (first,) = r.json()["detail"]
    return dict(first)


@pytest.mark.parametrize(
    ("extra", "loc"),
    [
        ({"response_format": {"type": "json_schema"}}, ["body", "response_format", "json_schema"]),
        ({"n": 2}, ["body", "n"]),
        ({"tool_choice": "required"}, ["body", "tool_choice"]),
        ({"messages": [{"role": "user", "content": "word " * 600}]}, ["body", "messages"]),
    ],
)
def test_what_the_model_cant_honour_is_a_422_naming_the_parameter(
    host: RunningHost, extra: dict[str, Any], loc: list[str]
) -> None:
    with host.client() as c:
        d = detail(c.post("/chat/completions", json={"model": MODEL, "messages": STORY, **extra}))
    assert d["loc"] == loc


def test_an_over_long_prompt_gets_the_numbers(host: RunningHost) -> None:
    with host.client() as c:
        chat = detail(
            c.post("/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "a " * 600}]})
        )
        text = detail(c.post("/completions", json={"model": MODEL, "prompt": "a " * 600, "stream": True}))
    assert chat["input"]["context_length"] == 512 and chat["input"]["prompt_tokens"] > 512
    assert "512" in chat["msg"] and str(chat["input"]["prompt_tokens"]) in chat["msg"]
    assert text["loc"] == ["body", "prompt"] and text["input"]["prompt_tokens"] > 512


def test_model_extras_are_passed_through_to_the_runner_which_takes_top_k_only(
    host: RunningHost, azure_chat: ChatCompletionsClient
) -> None:
    client = azure_chat
    ok = client.complete(messages=[UserMessage("hi")], model=MODEL, max_tokens=4, model_extras={"top_k": 5})
    assert ok.usage.completion_tokens <= 4
    with pytest.raises(HttpResponseError) as caught:
        client.complete(messages=[UserMessage("hi")], model=MODEL, model_extras={"mirostat": 2})
    assert caught.value.status_code == 422 and "mirostat" in str(caught.value)
    with host.client() as c:  # without the header, an unknown parameter is an error
        assert detail(c.post("/chat/completions", json={"model": MODEL, "messages": STORY, "top_k": 5}))["loc"] == [
            "body",
            "top_k",
        ]


def test_the_sdk_sees_the_422_too(host: RunningHost, azure_chat: ChatCompletionsClient) -> None:
    client = azure_chat
    with pytest.raises(HttpResponseError) as caught:
        client.complete(messages=[UserMessage("hi")], model=MODEL, max_tokens=100_000)
    assert caught.value.status_code == 422


def test_deployments_of_the_other_kind_are_404_and_info_says_chat(host: RunningHost) -> None:
    with host.client() as c:
        embed = c.post("/embeddings", json={"model": MODEL, "input": "x"})
        chat = c.post("/chat/completions", json={"model": "all-MiniLM-L6-v2", "messages": STORY})
        info = c.get("/info", params={"model": MODEL}).json()
    assert embed.status_code == chat.status_code == 404
    assert chat.json()["error"] == {
        "code": "NotFound",
        "message": "Model 'all-MiniLM-L6-v2' is of type embeddings; this route serves chat_completion models.",
    }
    assert info == {"model_name": MODEL, "model_type": "chat_completion", "model_provider_name": "inferq"}


def test_two_concurrent_generations_both_complete_correctly(host: RunningHost) -> None:
    bodies = [
        {"model": MODEL, "messages": STORY, "max_tokens": 120, "temperature": 0.8, "seed": 11},
        {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 90, "temperature": 0.8, "seed": 12},
    ]
    paths = ["/chat/completions", "/completions"]

    def call(i: int) -> dict[str, Any]:
        with host.client() as c:
            r = c.post(paths[i], json=bodies[i])
            assert r.status_code == 200, r.text
            return dict(r.json())

    alone = [call(0), call(1)]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(call, [0, 1]))
    for a, b in zip(alone, together, strict=True):
        assert a["choices"] == b["choices"] and a["usage"] == b["usage"]
    assert together[0]["usage"]["completion_tokens"] <= 120 and together[1]["usage"]["completion_tokens"] <= 90
