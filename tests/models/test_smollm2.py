"""SmolLM2-135M-Instruct (int4, `make chat-model`) through the real local host, as clients use it: greedy answers
to factual questions hold the expected word, and streaming, stop sequences and billing behave as with the tiny
model. Short greedy prompts, few tokens: the whole module takes seconds on 2 cores."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KEYS, ROOT, RunningHost, wait_for
from tests.models.conftest import SMOLLM2_DIR

pytestmark = [pytest.mark.models, pytest.mark.e2e]
MODEL = "smollm2-135m-instruct"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def chat(host: RunningHost, messages: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    with host.client() as c:
        r = c.post("/chat/completions", json={"model": MODEL, "messages": messages, "temperature": 0, **extra})
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.parametrize(
    ("question", "word"),
    [
        ("What is the capital of France?", "Paris"),
        ("What is the largest planet in our solar system?", "Jupiter"),
        ("Who wrote Romeo and Juliet?", "Shakespeare"),
    ],
)
def test_greedy_answers_to_factual_questions_hold_the_expected_word(
    smollm2_host: RunningHost, question: str, word: str
) -> None:
    body = chat(smollm2_host, [{"role": "user", "content": question}], max_tokens=24)
    (choice,) = body["choices"]
    assert word in choice["message"]["content"], choice["message"]["content"]
    assert body["model"] == "SmolLM2-135M-Instruct" and body["usage"]["completion_tokens"] <= 24


def test_it_is_served_from_the_built_folder_and_listed_available(smollm2_host: RunningHost) -> None:
    with smollm2_host.client() as c:
        models = {m["id"]: m for m in c.get("/models").json()["data"]}
        info = c.get("/info", params={"model": MODEL}).json()
    assert models[MODEL]["available"] is True and models[MODEL]["model_type"] == "chat_completion"
    assert info == {
        "model_name": "SmolLM2-135M-Instruct",
        "model_type": "chat_completion",
        "model_provider_name": "HuggingFaceTB",
    }
    assert (SMOLLM2_DIR / "manifest.json").is_file()


def test_a_greedy_answer_stops_by_itself_within_max_tokens(smollm2_host: RunningHost) -> None:
    question = [{"role": "user", "content": "What is the largest planet in our solar system?"}]
    body = chat(smollm2_host, question, max_tokens=48)
    assert body["choices"][0]["finish_reason"] == "stop" and body["usage"]["completion_tokens"] < 48


def test_the_stream_adds_up_to_the_same_greedy_answer(smollm2_host: RunningHost) -> None:
    whole = chat(smollm2_host, FRANCE, max_tokens=20)["choices"][0]["message"]["content"]
    body = {"model": MODEL, "messages": FRANCE, "max_tokens": 20, "temperature": 0, "stream": True}
    body["stream_options"] = {"include_usage": True}
    with smollm2_host.client() as c, c.stream("POST", "/chat/completions", json=body) as r:
        assert r.status_code == 200
        events = [line.removeprefix("data: ") for line in r.iter_lines() if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == whole and "Paris" in text
    assert chunks[-1]["usage"]["completion_tokens"] == 20


def test_a_stop_sequence_cuts_the_answer_before_it(smollm2_host: RunningHost) -> None:
    whole = chat(smollm2_host, FRANCE, max_tokens=20)["choices"][0]["message"]["content"]
    cut = chat(smollm2_host, FRANCE, max_tokens=20, stop=[" Paris"])["choices"][0]
    assert cut["message"]["content"] == whole[: whole.index(" Paris")] and cut["finish_reason"] == "stop"


def test_billing_is_the_tokens_clients_were_told_at_the_deployments_prices(smollm2_host: RunningHost) -> None:
    told = {"prompt_tokens": 0, "completion_tokens": 0}
    with smollm2_host.client(KEYS["globex"]) as c:  # the one test of this tenant: its usage is this test's
        for body in (
            {"messages": FRANCE, "max_tokens": 8, "temperature": 0},
            {"prompt": "The capital of Italy is", "max_tokens": 6, "temperature": 0},
        ):
            path = "/chat/completions" if "messages" in body else "/completions"
            r = c.post(path, json={"model": MODEL, **body})
            assert r.status_code == 200, r.text
            for k in told:
                told[k] += r.json()["usage"][k]

    def lines() -> dict[str, dict[str, Any]]:
        with smollm2_host.client(KEYS["globex"]) as c:
            items = c.get("/usage", params={"from": "2000-01-01", "granularity": "month"}).json()["items"]
        return {i["meter"]: i for i in items if i["deployment"] == MODEL}

    wait_for(lambda: lines().get("output_tokens", {}).get("tokens") == told["completion_tokens"])
    billed = lines()
    assert billed["input_tokens"]["tokens"] == told["prompt_tokens"]
    assert Decimal(billed["output_tokens"]["unit_price"]) == Decimal("0.0006")
    assert Decimal(billed["input_tokens"]["cost"]) == Decimal(told["prompt_tokens"]) / 1000 * Decimal("0.0002")


def readme_examples() -> tuple[str, str]:
    """The README's SmolLM2 examples (```sh curl, ```py Python): left out of test_readme_examples (`make test`)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (curl,) = [b for b in re.findall(r"```sh\n(.*?)```", readme, re.S) if MODEL in b]
    (python,) = [b for b in re.findall(r"```py\n(.*?)```", readme, re.S) if MODEL in b]
    return re.sub(r"\\\n\s*", " ", curl).strip(), python


def test_the_readmes_examples_print_sensible_english(smollm2_host: RunningHost, tmp_path: Path) -> None:
    curl, python = readme_examples()
    env = {**os.environ, "INFERQ_API_KEY": KEYS["acme"]}
    local = "http://127.0.0.1:7071"
    out = subprocess.run(["bash", "-c", curl.replace(local, smollm2_host.url)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "Paris" in json.loads(out.stdout)["choices"][0]["message"]["content"]
    script = tmp_path / "example.py"
    script.write_text(python.replace(local, smollm2_host.url), encoding="utf-8")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "The largest planet in our solar system is Jupiter."


def test_the_bench_prints_the_smollm2_rows() -> None:
    """`make bench`'s SmolLM2 table (no timing asserted): raw genai, the host sync and streamed, the host's RSS."""
    from tests.integration.test_bench_smoke import table_rows

    cmd = [sys.executable, str(ROOT / "scripts" / "bench.py"), "--only", "smollm2", "--gen-requests", "2"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "FAILED" not in result.stdout, result.stdout + result.stderr
    rows = table_rows(result.stdout, "Generation on SmolLM2-135M-Instruct")
    assert [r["path"].split(",")[0] for r in rows] == ["raw onnxruntime-genai loop", "local host", "local host"]
    assert all(float(r["tokens/s"].replace(",", "")) > 0 and r["errors"] == "0" for r in rows), rows
    assert rows[2]["1st chunk p50 ms"] and "host RSS" in result.stdout
