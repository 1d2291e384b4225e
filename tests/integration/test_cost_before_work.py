"""Cost bounded before work, on the HTTP app with the tiny chat model's real tokenizer: a prompt that can't fit
the context is refused by its length before it is tokenized, a request its tenant's limits refuse is refused
before its body is checked (on every inference route), and an 8 MB prompt leaves the process's memory as it
found it (measured in a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.http.app import app
from shared.application.gateway import Gateway
from shared.bootstrap import bootstrap, set_app
from shared.domain.auth import hash_key
from shared.domain.config import load_config
from shared.domain.routing import Route
from shared.runtimes.engines.prompts import PromptCounter
from shared.settings import Settings
from tests.conftest import KEYS, ROOT, write_config

LIMITED_KEY = "initech-key"
TENANTS = f'[[tenants]]\nname = "initech"\nkey_sha256 = ["{hash_key(LIMITED_KEY)}"]\nrequests_per_minute = 1\n\n'
HUGE = "x" * 8_000_000  # 8 MB, just under the body limit
ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of every text the edge tokenizes."""
    texts: list[int] = []
    tokenize = PromptCounter._count

    def spy(self: PromptCounter, text: str, add_special_tokens: bool) -> int:
        texts.append(len(text))
        return tokenize(self, text, add_special_tokens)

    monkeypatch.setattr(PromptCounter, "_count", spy)
    return texts


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    config = load_config(write_config(tmp_path / "limits.toml", extra=TENANTS))
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", config=tmp_path / "unused")
    set_app(bootstrap(settings, config=config))
    with TestClient(app) as c:
        yield c
    set_app(None)


def complete(client: TestClient, key: str, body: dict[str, Any]) -> Any:
    route = "/chat/completions" if "messages" in body else "/completions"
    return client.post(route, json={"model": "tiny-random-chat", **body}, headers={"api-key": key, **ASYNC})


def test_a_prompt_too_long_for_the_context_is_refused_by_its_length_without_tokenizing(
    client: TestClient, counted: list[int]
) -> None:
    for body in ({"prompt": HUGE}, {"messages": [{"role": "user", "content": HUGE}]}):
        refused = complete(client, KEYS["acme"], body)
        assert refused.status_code == 422, refused.text
        detail = refused.json()["detail"][0]
        assert "context is 512 tokens" in detail["msg"] and "at least" in detail["msg"]
    assert counted == []  # never tokenized
    assert complete(client, KEYS["acme"], {"prompt": "hello"}).status_code == 202
    assert counted == [5]  # what may fit is counted exactly


def test_a_rate_limited_tenant_is_refused_before_its_prompt_is_checked(client: TestClient, counted: list[int]) -> None:
    assert complete(client, LIMITED_KEY, {"prompt": "hello"}).status_code == 202  # its one request a minute
    texts = [
        {"prompt": HUGE},
        {"prompt": "a fine prompt"},
        {"messages": [{"role": "user", "content": "a fine question"}]},
    ]
    for body in texts:
        refused = complete(client, LIMITED_KEY, body)
        assert refused.status_code == 429, refused.text
    assert counted == [5]  # only the admitted request's prompt


def test_every_inference_route_admits_a_request_before_checking_its_body(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    check = Gateway.check

    def spy(self: Gateway, route: Route, request: Any, extra: Any) -> dict[str, Any]:
        checked.append(route.deployment.name)
        return check(self, route, request, extra)

    monkeypatch.setattr(Gateway, "check", spy)
    assert complete(client, LIMITED_KEY, {"prompt": "hello"}).status_code == 202  # its one request a minute
    assert checked == ["tiny-random-chat"]
    deep: Any = [1]
    for _ in range(60):
        deep = [deep, list(range(100))]
    for route, body in (
        ("/embeddings", {"input": ["a text"] * 2048}),
        ("/chat/completions", {"model": "tiny-random-chat", "messages": [{"role": "user", "content": HUGE}]}),
        ("/completions", {"model": "tiny-random-chat", "prompt": HUGE}),
        ("/score", {"model": "linear-scorer", "data": deep}),
    ):
        refused = client.post(route, json=body, headers={"api-key": LIMITED_KEY, **ASYNC})
        assert refused.status_code == 429, (route, refused.text)
    assert checked == ["tiny-random-chat"]  # none of the refused bodies was checked


MEASURE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from fastapi.testclient import TestClient
    from functions.http.app import app
    from shared.bootstrap import bootstrap, set_app
    from shared.domain.config import load_config
    from shared.settings import Settings
    from tests.conftest import KEYS, write_config

    tmp = Path(sys.argv[1])
    config = load_config(write_config(tmp / "inferq.toml"))
    set_app(bootstrap(Settings(_env_file=None, data_dir=tmp / "data", config=tmp / "unused"), config=config))
    headers = {"api-key": KEYS["acme"], "Prefer": "respond-async", "content-type": "application/json"}
    bodies = [
        json.dumps({"model": "tiny-random-chat", "prompt": "x" * 8_000_000}).encode(),
        json.dumps({"model": "tiny-random-chat", "messages": [{"role": "user", "content": "x" * 8_000_000}]}).encode(),
    ]
    def peak():  # KiB, this process's highest RSS so far (ru_maxrss would count the parent's, from before exec)
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
    with TestClient(app) as client:
        warm = client.post("/completions", json={"model": "tiny-random-chat", "prompt": "hi"}, headers=headers)
        assert warm.status_code == 202, warm.text  # the tokenizer is loaded
        before = peak()
        statuses = [client.post(r, content=b, headers=headers).status_code
                    for r, b in zip(("/completions", "/chat/completions"), bodies)]
        print(json.dumps({"statuses": statuses, "growth_mib": (peak() - before) / 1024}))
    """
)


def test_an_8_mb_prompt_costs_less_than_50_mib_of_memory(tmp_path: Path) -> None:
    """Measured in a fresh process (peak RSS, before and after two 8 MB prompts): tokenizing one took about
    1 GiB."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["statuses"] == [422, 422]
    assert result["growth_mib"] < 50, result
