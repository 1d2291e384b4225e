"""Structured outputs and tool calls on the real model (SmolLM2-135M-Instruct): constrained decoding gives valid
JSON of the schema's shape, and the content a small instruct model puts there is sensible."""

from __future__ import annotations

import json
from collections.abc import Iterator

import jsonschema
import pytest
from openai import OpenAI

from tests.conftest import KEYS, RunningHost

pytestmark = [pytest.mark.models, pytest.mark.e2e]
MODEL = "smollm2-135m-instruct"
CITY = {
    "type": "object",
    "properties": {
        "country": {"type": "string", "maxLength": 20},
        "capital": {"type": "string", "maxLength": 20},
        "continent": {"enum": ["Africa", "America", "Asia", "Europe", "Oceania"]},
    },
    "required": ["country", "capital", "continent"],
    "additionalProperties": False,
}


@pytest.fixture
def client(smollm2_host: RunningHost) -> Iterator[OpenAI]:
    with OpenAI(base_url=smollm2_host.url, api_key=KEYS["acme"], max_retries=0) as c:
        yield c


def test_a_json_schema_request_returns_valid_json(client: OpenAI) -> None:
    result = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": CITY, "strict": True}},
        temperature=0,
        max_tokens=80,
        logprobs=True,
        top_logprobs=2,
    )
    (choice,) = result.choices
    assert choice.finish_reason == "stop", choice
    answer = json.loads(choice.message.content or "")
    jsonschema.validate(answer, CITY)
    assert answer["capital"] == "Paris" and answer["continent"] == "Europe"
    tokens = choice.logprobs.content if choice.logprobs else None
    assert tokens and "".join(t.token for t in tokens) == choice.message.content
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in tokens)


def test_a_required_tool_call_has_arguments_of_the_tools_schema(client: OpenAI) -> None:
    weather = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    }
    result = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What's the weather in Paris, in celsius?"}],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": weather}}],
        tool_choice="required",
        temperature=0,
        max_tokens=60,
    )
    (choice,) = result.choices
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, weather)
    assert call.function.name == "get_weather" and arguments["city"] == "Paris"
