"""Structured outputs and tool calls through the real local host on the tiny random-weight model: its text is
gibberish, but constrained decoding (onnxruntime-genai guidance) forces it into the schema's shape. The schemas are
bounded (enums, maxLength, integer ranges) so every generation ends well within max_tokens."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import jsonschema
import pytest
from openai import OpenAI

from tests.conftest import KEYS, RunningHost, wait_for

pytestmark = pytest.mark.e2e
MODEL = "tiny-random-chat"
ASK = [{"role": "user", "content": "Describe a pet as JSON."}]
PET = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 12},
        "kind": {"enum": ["cat", "dog", "fish"]},
        "age": {"type": "integer", "minimum": 0, "maximum": 30},
        "vaccinated": {"type": "boolean"},
        "tags": {"type": "array", "items": {"enum": ["cute", "loud", "old"]}, "maxItems": 3},
    },
    "required": ["name", "kind", "age", "vaccinated", "tags"],
    "additionalProperties": False,
}
PET_FORMAT = {"type": "json_schema", "json_schema": {"name": "pet", "schema": PET, "strict": True}}
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 10},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME = {
    "type": "object",
    "properties": {"zone": {"enum": ["UTC", "CET", "PST"]}},
    "required": ["zone"],
    "additionalProperties": False,
}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "parameters": TIME}},
]
PARAMETERS = {"get_weather": WEATHER, "get_time": TIME}


@pytest.fixture
def openai_client(host: RunningHost) -> Iterator[OpenAI]:
    with OpenAI(base_url=host.url, api_key=KEYS["acme"], max_retries=0) as client:
        yield client


def test_fifty_seeded_json_schema_outputs_all_parse_and_validate(host: RunningHost) -> None:
    texts = set()
    with host.client() as c:
        for seed in range(50):
            body = {"model": MODEL, "messages": ASK, "response_format": PET_FORMAT, "seed": seed, "temperature": 1.0}
            r = c.post("/chat/completions", json={**body, "max_tokens": 200})
            assert r.status_code == 200, r.text
            (choice,) = r.json()["choices"]
            assert choice["finish_reason"] == "stop", choice
            jsonschema.validate(json.loads(choice["message"]["content"]), PET)
            texts.add(choice["message"]["content"])
    assert len(texts) > 40  # the seeds sample different values: the schema's shape, not one canned answer


def test_openai_sdk_json_schema_and_json_object(openai_client: OpenAI) -> None:
    result = openai_client.chat.completions.create(
        model=MODEL,
        messages=ASK,  # type: ignore[arg-type]
        response_format=PET_FORMAT,  # type: ignore[arg-type]
        seed=7,
        max_tokens=200,
    )
    jsonschema.validate(json.loads(result.choices[0].message.content or ""), PET)
    assert result.choices[0].finish_reason == "stop" and result.usage and result.usage.completion_tokens > 0
    # json_object: any JSON object, unbounded: these seeds are ones the tiny model closes within the budget
    # (others write a string key until max_tokens, and stop with "length").
    for seed in (0, 7, 8):
        obj = openai_client.chat.completions.create(
            model=MODEL,
            messages=ASK,  # type: ignore[arg-type]
            response_format={"type": "json_object"},
            temperature=1.0,
            seed=seed,
            max_tokens=256,
        )
        assert obj.choices[0].finish_reason == "stop"
        assert isinstance(json.loads(obj.choices[0].message.content or ""), dict)


def test_a_streamed_structured_output_reassembles_to_valid_json(openai_client: OpenAI) -> None:
    for seed in range(3):
        chunks = list(
            openai_client.chat.completions.create(
                model=MODEL,
                messages=ASK,  # type: ignore[arg-type]
                response_format=PET_FORMAT,  # type: ignore[arg-type]
                seed=seed,
                max_tokens=200,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1  # streamed, not one piece
        jsonschema.validate(json.loads(text), PET)
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize(
    ("tool_choice", "names"),
    [
        ("required", {"get_weather", "get_time"}),
        ({"type": "function", "function": {"name": "get_time"}}, {"get_time"}),
    ],
)
def test_tool_calls_validate_against_the_tools_parameters(
    openai_client: OpenAI, tool_choice: Any, names: set[str]
) -> None:
    called = set()
    for seed in range(10):
        result = openai_client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "What's the weather in Paris?"}],
            tools=TOOLS,
            tool_choice=tool_choice,
            seed=seed,
            max_tokens=100,
        )
        (choice,) = result.choices
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (call,) = choice.message.tool_calls or []
        assert call.type == "function" and call.id.startswith("call_")
        jsonschema.validate(json.loads(call.function.arguments), PARAMETERS[call.function.name])
        called.add(call.function.name)
    assert called <= names and called


def test_a_streamed_tool_call_arrives_as_a_tool_calls_delta(openai_client: OpenAI) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Time?"}],
            tools=TOOLS,
            tool_choice="required",
            seed=3,
            max_tokens=100,
            stream=True,
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert not any(d.content for d in deltas)  # the call's JSON is not content
    (call,) = [t for d in deltas for t in d.tool_calls or []]
    assert call.index == 0 and call.function and call.function.name in PARAMETERS
    jsonschema.validate(json.loads(call.function.arguments or ""), PARAMETERS[call.function.name])
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_choice_none_and_auto_answer_in_text_when_the_model_does_not_call(openai_client: OpenAI) -> None:
    for choice in ("none", "auto"):
        result = openai_client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Tell me a story"}],
            tools=TOOLS,
            tool_choice=choice,  # type: ignore[arg-type]
            temperature=0,
            max_tokens=16,
        )
        (c,) = result.choices
        assert c.finish_reason == "length" and c.message.content and not c.message.tool_calls


@pytest.mark.parametrize(
    ("extra", "loc"),
    [
        ({"response_format": {"type": "json_schema"}}, ["body", "response_format", "json_schema"]),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": 3}}},
            ["body", "response_format", "json_schema"],
        ),
        ({"tool_choice": "required"}, ["body", "tool_choice"]),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, ["body", "tool_choice"]),
        ({"tools": [TOOLS[0], TOOLS[0]]}, ["body", "tools"]),
        ({"messages": [{"role": "tool", "content": "21"}]}, ["body", "messages", 0]),
        ({"messages": [{"role": "user"}]}, ["body", "messages", 0]),
        ({"top_logprobs": 2}, ["body", "top_logprobs"]),
        ({"logprobs": True, "stream": True}, ["body", "logprobs"]),
        ({"logprobs": True, "top_logprobs": 21}, ["body", "top_logprobs"]),
    ],
)
def test_malformed_structure_is_a_422_naming_the_parameter(
    host: RunningHost, extra: dict[str, Any], loc: list[str]
) -> None:
    with host.client() as c:
        r = c.post("/chat/completions", json={"model": MODEL, "messages": ASK, **extra})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc


def test_a_schema_the_model_cannot_enforce_fails_naming_response_format(host: RunningHost) -> None:
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "bogus"}}}
    with host.client() as c:
        r = c.post("/chat/completions", json={"model": MODEL, "messages": ASK, "response_format": bad})
    assert r.status_code == 422, r.text
    assert "response_format" in r.text


def test_structured_outputs_and_tool_calls_are_billed_as_any_chat(host: RunningHost) -> None:
    told = {"prompt_tokens": 0, "completion_tokens": 0}
    key = KEYS["globex"]  # a tenant of its own: its usage is only this test's
    with host.client(key) as c:
        for extra in ({"response_format": PET_FORMAT}, {"tools": TOOLS, "tool_choice": "required"}):
            r = c.post("/chat/completions", json={"model": MODEL, "messages": ASK, "seed": 1, **extra})
            assert r.status_code == 200, r.text
            for k in told:
                told[k] += r.json()["usage"][k]
        with c.stream(
            "POST",
            "/chat/completions",
            json={"model": MODEL, "messages": ASK, "response_format": PET_FORMAT, "stream": True},
        ) as r:
            job_id = r.headers["x-inferq-job-id"]
            assert [line for line in r.iter_lines() if line][-1] == "data: [DONE]"
        for k in told:
            told[k] += c.get(f"/jobs/{job_id}").json()["result"]["usage"][k]

    def lines() -> dict[str, Any]:
        with host.client(key) as c:
            items = c.get("/usage", params={"from": "2000-01-01", "granularity": "month"}).json()["items"]
        return {i["meter"]: i for i in items if i["deployment"] == MODEL}

    wait_for(lambda: lines().get("output_tokens", {}).get("tokens") == told["completion_tokens"])
    got = lines()
    assert got["input_tokens"]["tokens"] == told["prompt_tokens"]
    assert Decimal(got["output_tokens"]["cost"]) == Decimal(told["completion_tokens"]) / 1000 * Decimal("0.0015")


def test_an_agent_loop_sends_the_call_and_its_result_back(openai_client: OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "What's the weather in Paris?"}]
    first = openai_client.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        seed=1,
        max_tokens=100,
    )
    (call,) = first.choices[0].message.tool_calls or []
    messages.append(first.choices[0].message.model_dump(exclude_none=True))  # as the SDK's examples do
    messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'})
    second = openai_client.chat.completions.create(
        model=MODEL, messages=messages, tools=TOOLS, tool_choice="none", temperature=0, max_tokens=8
    )
    assert second.choices[0].message.content and second.choices[0].finish_reason == "length"
    assert second.usage and second.usage.prompt_tokens > first.usage.prompt_tokens  # type: ignore[union-attr]


def test_logprobs_are_the_models_per_token_log_probabilities(openai_client: OpenAI) -> None:
    result = openai_client.chat.completions.create(
        model=MODEL,
        messages=ASK,  # type: ignore[arg-type]
        response_format=PET_FORMAT,  # type: ignore[arg-type]
        seed=2,
        max_tokens=200,
        logprobs=True,
        top_logprobs=3,
    )
    (choice,) = result.choices
    assert choice.logprobs is not None and choice.logprobs.content is not None
    content = choice.logprobs.content
    assert len(content) == result.usage.completion_tokens  # type: ignore[union-attr]
    assert "".join(t.token for t in content) == choice.message.content  # the tokens spell the answer
    for t in content:
        assert t.logprob <= 0 and t.bytes == list(t.token.encode())
        assert len(t.top_logprobs) == 3
        assert [a.logprob for a in t.top_logprobs] == sorted((a.logprob for a in t.top_logprobs), reverse=True)
        assert all(0 >= a.logprob for a in t.top_logprobs)
    greedy = openai_client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        temperature=0,
        max_tokens=8,
        logprobs=True,
        top_logprobs=1,  # type: ignore[arg-type]
    )
    for t in greedy.choices[0].logprobs.content or []:  # type: ignore[union-attr]
        assert t.top_logprobs[0].token == t.token and t.top_logprobs[0].logprob == t.logprob  # greedy: the best
    plain = openai_client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=4)  # type: ignore[arg-type]
    assert plain.choices[0].logprobs is None
