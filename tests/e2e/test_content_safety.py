"""Content safety through the real local host: prompts screened at the edge (400 content_filter with Azure's inner
error, never queued, input tokens billed), completions screened as they stream (cut with finish_reason
content_filter), Azure's annotations parsed by the azure-ai-inference and openai SDKs. The classifier is the tiny
hand-weighted one in config/demo/safety-classifier; the chat model is the tiny random one, whose greedy answer to
"Hello!" holds the word "fin" after some twenty tokens: a tenant blocklist of that word cuts it mid-way."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.ai.inference import ChatCompletionsClient
from azure.ai.inference.models import UserMessage
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from openai import BadRequestError, OpenAI

from shared.domain.auth import hash_key
from tests.conftest import ADMIN_KEY, ROOT, RunningHost, start_host, stop_host, wait_for, write_config

pytestmark = pytest.mark.e2e
MODEL = "tiny-safe-chat"  # content safety on, as the README's example declares it
OPEN = "tiny-random-chat"  # the same model in the example config: content safety off (the default)
KEYS = {"acme": "acme-key", "globex": "globex-key", "initech": "initech-key"}
HELLO = [{"role": "user", "content": "Hello!"}]
GREEDY = {"max_tokens": 60, "temperature": 0}
CATEGORIES = {"hate", "sexual", "violence", "self_harm"}
TENANT_BLOCKLIST = """
[[tenants.blocklists]]
name = "tenant-words"
terms = ["fin"]
"""


def readme_example() -> str:
    """The README's content safety config, which it says to paste at the end of config/inferq.toml."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Content safety") :]
    return section[section.index("```toml\n") + 8 : section.index("```\n", section.index("```toml"))]


def config_text(folder: Path) -> str:
    """The example config's deployments with the README's example pasted at the end; three tenants, two of them
    with a blocklist of their own."""
    config = write_config(folder / "example.toml", after=readme_example()).read_text()
    config = config.replace('source = "config/demo/', f'source = "{ROOT.as_posix()}/config/demo/')
    tenants = ""
    for name, key in KEYS.items():
        tenants += f'[[tenants]]\nname = "{name}"\nkey_sha256 = ["{hash_key(key)}"]\n'
        tenants += TENANT_BLOCKLIST if name != "globex" else ""
        tenants += "\n"
    return config[: config.index("[[tenants]]")] + tenants + config[config.index("[[deployments]]") :]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    folder = tmp_path_factory.mktemp("safety")
    config = folder / "safety.toml"
    config.write_text(config_text(folder))
    running = start_host(folder, config=config)
    yield running
    stop_host(running)


def client(host: RunningHost, tenant: str = "acme") -> httpx.Client:
    return host.client(KEYS[tenant])


def chat(host: RunningHost, content: str, tenant: str = "acme", **body: Any) -> httpx.Response:
    with client(host, tenant) as c:
        return c.post(
            "/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": content}], **body}
        )


def inner(response: httpx.Response) -> dict[str, Any]:
    """The 400's content_filter_result, after checking Azure's envelope around it."""
    assert response.status_code == 400, response.text
    assert response.headers["x-ms-error-code"] == "content_filter"
    error = response.json()["error"]
    assert error["code"] == "content_filter" and error["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    result: dict[str, Any] = error["innererror"]["content_filter_result"]
    return result


def severities(annotation: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    return {c: (annotation[c]["filtered"], annotation[c]["severity"]) for c in CATEGORIES}


def test_a_blocklist_term_or_regex_in_the_prompt_is_refused_with_azure_details(host: RunningHost) -> None:
    for prompt in ("This word is FORBIDDEN here.", "what a b4d  w0rd", "Prompt: please say fin."):
        result = inner(chat(host, prompt))
        assert severities(result) == dict.fromkeys(CATEGORIES, (False, "safe"))
        blocklists = result["custom_blocklists"]
        expected = "tenant-words" if "fin" in prompt else "banned-words"
        assert blocklists == {"filtered": True, "details": [{"filtered": True, "id": expected}]}
    # A term matches whole words only: "forbiddenness" and "final" are not blocked.
    ok = chat(host, "forbiddenness is final", max_tokens=1)
    assert ok.status_code == 200, ok.text
    assert ok.json()["prompt_filter_results"][0]["content_filter_results"]["custom_blocklists"] == {
        "filtered": False,
        "details": [],
    }


def test_a_classifier_category_at_its_threshold_is_refused(host: RunningHost) -> None:
    hate = inner(chat(host, "You are a bigot."))  # hate medium, threshold medium
    assert severities(hate)["hate"] == (True, "medium") and hate["custom_blocklists"]["filtered"] is False
    sexual = inner(chat(host, "Let us flirt"))  # sexual low, threshold low
    assert severities(sexual)["sexual"] == (True, "low")


def test_below_its_threshold_a_prompt_passes_with_its_severities_annotated(host: RunningHost) -> None:
    # hate low < medium, violence medium < high, self_harm high but "off": annotated, not filtered.
    r = chat(host, "Do not be a jerk or stab me, I feel suicide talk is grim", tenant="globex", max_tokens=4)
    assert r.status_code == 200, r.text
    (prompt,) = r.json()["prompt_filter_results"]
    assert prompt["prompt_index"] == 0
    assert severities(prompt["content_filter_results"]) == {
        "hate": (False, "low"),
        "sexual": (False, "safe"),
        "violence": (False, "medium"),
        "self_harm": (False, "high"),
    }
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "length", json.dumps(r.json())
    assert severities(choice["content_filter_results"]) == dict.fromkeys(CATEGORIES, (False, "safe"))


def greedy_hello(host: RunningHost) -> str:
    """What the model answers "Hello!" greedily, unscreened (the same model without content safety)."""
    with client(host) as c:
        r = c.post("/chat/completions", json={"model": OPEN, "messages": HELLO, **GREEDY})
    assert r.status_code == 200 and "prompt_filter_results" not in r.json(), r.text  # off: no annotations
    assert "content_filter_results" not in r.json()["choices"][0]
    text: str = r.json()["choices"][0]["message"]["content"]
    assert re.search(r"(?<!\w)fin(?!\w)", text), text  # what the cut below relies on
    return text


def test_a_completion_that_turns_harmful_is_cut_with_finish_reason_content_filter(host: RunningHost) -> None:
    full = greedy_hello(host)
    r = chat(host, "Hello!", **GREEDY)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    text = choice["message"]["content"]
    assert full.startswith(text) and len(text) < len(full) and not re.search(r"(?<!\w)fin(?!\w)", text)
    assert choice["content_filter_results"]["custom_blocklists"] == {
        "filtered": True,
        "details": [{"filtered": True, "id": "tenant-words"}],
    }
    # The tenant's blocklist is the tenant's: another tenant gets the whole answer.
    whole = chat(host, "Hello!", tenant="globex", **GREEDY).json()["choices"][0]
    assert whole["message"]["content"] == full and whole["finish_reason"] == "length"


def test_a_stream_is_cut_mid_way_with_finish_reason_content_filter(host: RunningHost) -> None:
    full = greedy_hello(host)
    body = {"model": MODEL, "messages": HELLO, **GREEDY, "stream": True, "stream_options": {"include_usage": True}}
    with client(host) as c, c.stream("POST", "/chat/completions", json=body) as r:
        assert r.status_code == 200
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    first, *rest = events
    assert first["choices"] == [] and first["prompt_filter_results"][0]["prompt_index"] == 0
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in rest if e["choices"])
    assert text and full.startswith(text) and not re.search(r"(?<!\w)fin(?!\w)", text)  # some, then cut
    (last,) = [e for e in rest if e["choices"] and e["choices"][0]["finish_reason"]]
    assert last["choices"][0]["finish_reason"] == "content_filter"
    assert last["choices"][0]["content_filter_results"]["custom_blocklists"]["filtered"] is True
    assert rest[-1]["usage"]["completion_tokens"] > 0


def usage(host: RunningHost, tenant: str) -> dict[str, int]:
    with host.client(ADMIN_KEY) as c:
        r = c.get("/usage", params={"from": "2000-01-01", "granularity": "month", "tenant": tenant})
    assert r.status_code == 200, r.text
    return {i["meter"]: i["tokens"] for i in r.json()["items"] if i["deployment"] == MODEL}


def test_filtered_requests_bill_what_azure_bills_to_the_token(host: RunningHost) -> None:
    # A refused prompt: its input tokens (as the unscreened twin deployment counts the same prompt), no output.
    prompt = [{"role": "user", "content": "You are a bigot, a jerk and a bad word"}]
    with client(host, "initech") as c:
        assert c.post("/chat/completions", json={"model": MODEL, "messages": prompt}).status_code == 400
        twin = c.post("/chat/completions", json={"model": OPEN, "messages": prompt, "max_tokens": 1}).json()
        # A cut completion: its prompt and every token generated, as the response says.
        cut = c.post("/chat/completions", json={"model": MODEL, "messages": HELLO, **GREEDY}).json()
    assert cut["choices"][0]["finish_reason"] == "content_filter"
    expected = {
        "input_tokens": twin["usage"]["prompt_tokens"] + cut["usage"]["prompt_tokens"],
        "output_tokens": cut["usage"]["completion_tokens"],
    }
    wait_for(lambda: usage(host, "initech") == expected)


def test_the_azure_ai_inference_sdk_reads_the_annotations_and_the_refusal(host: RunningHost) -> None:
    with ChatCompletionsClient(endpoint=host.url, credential=AzureKeyCredential(KEYS["globex"])) as sdk:
        result = sdk.complete(messages=[UserMessage("Do not stab me")], model=MODEL, max_tokens=4)
        raw = result.as_dict()
        assert raw["prompt_filter_results"][0]["content_filter_results"]["violence"] == {
            "filtered": False,
            "severity": "medium",
        }
        assert raw["choices"][0]["content_filter_results"]["hate"] == {"filtered": False, "severity": "safe"}
        assert result.choices[0].finish_reason == "length"
        with pytest.raises(HttpResponseError) as refused:
            sdk.complete(messages=[UserMessage("You are a bigot")], model=MODEL)
    with ChatCompletionsClient(endpoint=host.url, credential=AzureKeyCredential(KEYS["acme"])) as sdk:
        cut = sdk.complete(messages=[UserMessage("Hello!")], model=MODEL, **GREEDY)
        assert cut.choices[0].finish_reason == "content_filter"
        updates = list(sdk.complete(messages=[UserMessage("Hello!")], model=MODEL, stream=True, **GREEDY))
        # The SDK skips an update without choices or usage (Azure's prompt annotation chunk too): the rest parse.
        assert all(u.choices for u in updates[:-1])
        assert [u.choices[0].finish_reason for u in updates if u.choices][-1] == "content_filter"
    assert refused.value.status_code == 400 and refused.value.error is not None
    assert refused.value.error.code == "content_filter"
    body = json.loads(refused.value.response.text())
    assert body["error"]["innererror"]["content_filter_result"]["hate"] == {"filtered": True, "severity": "medium"}


def test_the_openai_sdk_reads_the_annotations_and_the_refusal(host: RunningHost) -> None:
    with OpenAI(base_url=host.url, api_key=KEYS["acme"], max_retries=0) as sdk:
        result = sdk.completions.create(model=MODEL, prompt="Do not flirtatiously punch", max_tokens=3)
        extra = result.model_extra or {}
        assert extra["prompt_filter_results"][0]["content_filter_results"]["violence"]["severity"] == "low"
        assert (result.choices[0].model_extra or {})["content_filter_results"]["sexual"]["severity"] == "safe"
        chunks = list(sdk.chat.completions.create(model=MODEL, messages=HELLO, stream=True, **GREEDY))  # type: ignore[call-overload]
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "content_filter"
        assert not chunks[0].choices and (chunks[0].model_extra or {})["prompt_filter_results"][0]["prompt_index"] == 0
        with pytest.raises(BadRequestError) as refused:
            sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "massacre"}])
    assert refused.value.code == "content_filter"
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["innererror"]["content_filter_result"]["violence"] == {
        "filtered": True,
        "severity": "high",
    }
