"""Generation billing through the real local host: /usage shows output tokens as their own meter, priced
separately, and bills exactly the completion tokens clients were told about (streams included)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import RunningHost, wait_for

pytestmark = pytest.mark.e2e
MODEL = "tiny-random-chat"


def usage_lines(host: RunningHost) -> dict[str, dict[str, Any]]:
    with host.client() as c:
        r = c.get("/usage", params={"from": "2000-01-01", "granularity": "month"})
    assert r.status_code == 200, r.text
    return {item["meter"]: item for item in r.json()["items"] if item["deployment"] == MODEL}


def test_billed_output_tokens_equal_the_completion_tokens_returned(host: RunningHost) -> None:
    told = {"prompt_tokens": 0, "completion_tokens": 0}
    story = [{"role": "user", "content": "Tell me a story"}]
    with host.client() as c:
        for body in (
            {"messages": story, "max_tokens": 30, "temperature": 0},
            {"messages": [{"role": "user", "content": "Hello, who are you?"}], "temperature": 0},  # stops by itself
            {"prompt": "Once upon a time", "max_tokens": 17, "seed": 3, "temperature": 0.9},
        ):
            path = "/chat/completions" if "messages" in body else "/completions"
            r = c.post(path, json={"model": MODEL, **body})
            assert r.status_code == 200, r.text
            for k in told:
                told[k] += r.json()["usage"][k]
        stream = {"model": MODEL, "messages": story, "max_tokens": 45, "stream": True}
        with c.stream("POST", "/chat/completions", json=stream) as r:
            assert r.status_code == 200
            job_id = r.headers["x-inferq-job-id"]
            assert [line for line in r.iter_lines() if line][-1] == "data: [DONE]"
        # A stream without include_usage: the job keeps the usage the client could ask for.
        result = c.get(f"/jobs/{job_id}").json()["result"]
        for k in told:
            told[k] += result["usage"][k]
    assert told["completion_tokens"] > 0

    wait_for(lambda: usage_lines(host).get("output_tokens", {}).get("tokens") == told["completion_tokens"])
    lines = usage_lines(host)
    assert lines["input_tokens"]["tokens"] == told["prompt_tokens"]
    out, inp = lines["output_tokens"], lines["input_tokens"]
    assert Decimal(out["unit_price"]) == Decimal("0.0015") > Decimal(inp["unit_price"]) == Decimal("0.0005")
    assert Decimal(out["cost"]) == Decimal(told["completion_tokens"]) / 1000 * Decimal("0.0015")
