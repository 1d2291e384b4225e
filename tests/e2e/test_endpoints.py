"""Endpoints and deployments through the real local host: a traffic split, the header override, mirrored
requests (run, never returned, never billed), the per-deployment view, and an invalid config refused at start.

The host's routing is seeded (INFERQ_ROUTING_SEED), so which deployment serves which request is reproducible."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    ADMIN_KEY,
    CHAT_MODEL_DIR,
    KEYS,
    MODEL_DIR,
    RunningHost,
    start_host,
    stop_host,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.e2e
ALL_TIME = {"from": "2000-01-01", "granularity": "month"}
LIVE = {"minilm-blue", "minilm-green"}
SHADOW = "minilm-shadow"


def deployment(name: str, kind: str, folder: Path) -> str:
    return (
        f'[[deployments]]\nname = "{name}"\nkind = "{kind}"\nmodel_name = "{name}"\nmax_tokens = 64\n'
        f'[deployments.model]\nsource = "{folder.as_posix()}"\nfiles = {{}}\n'
        '[deployments.prices]\ninput_tokens = "0.0001"\noutput_tokens = "0.0002"\n\n'
    )


ENDPOINTS = (
    "".join(deployment(n, "embeddings", MODEL_DIR) for n in (*sorted(LIVE), SHADOW))
    + "".join(deployment(n, "chat-completion", CHAT_MODEL_DIR) for n in ("tiny-a", "tiny-b"))
    + '[[endpoints]]\nname = "embed"\ntraffic = { "minilm-blue" = 50, "minilm-green" = 50 }\n'
    + 'mirror = { "minilm-shadow" = 100 }\n\n'
    + '[[endpoints]]\nname = "chat"\ntraffic = { "tiny-a" = 50, "tiny-b" = 50 }\n'
)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    tmp = tmp_path_factory.mktemp("endpoints")
    config = write_config(tmp / "endpoints.toml", after=ENDPOINTS)
    running = start_host(tmp, env={"INFERQ_ROUTING_SEED": "7"}, config=config)
    yield running
    stop_host(running)


def served_by(c: httpx.Client, r: httpx.Response, endpoint: str = "embed") -> str:
    """The deployment the response names, checked against the job's own record (which keeps the endpoint)."""
    name = r.headers["azureml-model-deployment"]
    job = c.get(f"/jobs/{r.headers['x-inferq-job-id']}").json()
    assert (job["deployment"], job["endpoint"]) == (name, endpoint)
    return name


def rows(host: RunningHost, query: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the host's own SQLite file (WAL: readers never block it)."""
    with closing(sqlite3.connect(host.data_dir / "inferq.sqlite3", timeout=30)) as db:
        return db.execute(query, args).fetchall()


def job_doc(host: RunningHost, job_id: str) -> dict[str, Any] | None:
    found = rows(host, "SELECT doc FROM jobs WHERE id = ?", job_id)
    return json.loads(found[0][0]) if found else None


def test_requests_to_an_endpoint_are_split_and_every_response_names_its_deployment(host: RunningHost) -> None:
    with host.client() as c:
        served = Counter()
        for i in range(20):
            r = c.post("/embeddings", json={"input": f"split {i}", "model": "embed"})
            assert r.status_code == 200, r.text
            served[served_by(c, r)] += 1
        assert set(served) == LIVE, served  # both serve (seeded), the mirror never does
        # Also an error after the deployment was chosen, and a 202:
        bad = c.post("/embeddings", json={"input": "x", "model": "embed", "dimensions": 5})
        assert bad.status_code == 422 and bad.headers["azureml-model-deployment"] in LIVE
        accepted = c.post("/embeddings", json={"input": "later", "model": "EMBED"}, headers={"Prefer": "respond-async"})
        assert accepted.status_code == 202 and served_by(c, accepted) in LIVE
        # And a stream, through a chat endpoint of two deployments.
        body = {"model": "chat", "prompt": "Once upon a time", "max_tokens": 8, "stream": True}
        streamed = set()
        for _ in range(6):
            with c.stream("POST", "/completions", json=body) as s:
                assert s.status_code == 200
                assert [line for line in s.iter_lines() if line][-1] == "data: [DONE]"
            streamed.add(served_by(c, s, endpoint="chat"))
        assert streamed == {"tiny-a", "tiny-b"}


def test_the_header_reaches_the_named_deployment_every_time(host: RunningHost) -> None:
    with host.client() as c:
        for header in ["minilm-green"] * 8 + ["MINILM-BLUE"] * 4 + [SHADOW]:
            r = c.post(
                "/embeddings", json={"input": "pinned", "model": "embed"}, headers={"azureml-model-deployment": header}
            )
            assert r.status_code == 200 and served_by(c, r) == header.lower()
        other = c.post(
            "/embeddings",
            json={"input": "x", "model": "embed"},
            headers={"azureml-model-deployment": "all-MiniLM-L6-v2"},
        )
        assert other.status_code == 404 and "not behind endpoint 'embed'" in other.json()["error"]["message"]
        assert c.post("/embeddings", json={"input": "x", "model": "minilm-blue"}).status_code == 404  # not an endpoint
        info = c.get("/info", params={"model": "embed"}, headers={"azureml-model-deployment": "minilm-green"})
        assert info.json()["model_name"] == "minilm-green"
        assert "embed" in {m["id"] for m in c.get("/models").json()["data"]}


def test_mirrored_requests_run_on_the_mirror_but_are_never_returned_nor_billed(host: RunningHost) -> None:
    reported, live_ids = 0, []
    with host.client(KEYS["globex"]) as c:  # a tenant of its own: its /usage holds only this test's requests
        for text in ("mirror me", "and me too, please", "three"):
            r = c.post("/embeddings", json={"input": text, "model": "embed"})
            assert r.status_code == 200 and r.headers["azureml-model-deployment"] in LIVE
            reported += r.json()["usage"]["prompt_tokens"]
            live_ids.append(r.json()["id"])
        pinned = c.post(
            "/embeddings",
            json={"input": "pinned", "model": "embed"},
            headers={"azureml-model-deployment": "minilm-blue"},
        )
        reported += pinned.json()["usage"]["prompt_tokens"]

        mirror_ids = [f"{job_id}-mirror-{SHADOW}" for job_id in live_ids]
        wait_for(lambda: all((job_doc(host, m) or {}).get("status") == "succeeded" for m in mirror_ids))
        for mirror_id in mirror_ids:
            doc = job_doc(host, mirror_id)
            assert doc is not None
            assert (doc["deployment"], doc["endpoint"], doc["mirrored"], doc["result"]) == (SHADOW, "embed", True, None)
            assert c.get(f"/jobs/{mirror_id}").status_code == 404  # never shown to the client
        assert job_doc(host, f"{pinned.json()['id']}-mirror-{SHADOW}") is None  # the header is never mirrored

        # Its usage is recorded as mirrored, with the endpoint, and the ledger holds it without billing it.
        def ledger_rows() -> list[tuple[Any, ...]]:
            marks = ",".join("?" * len(mirror_ids))
            return rows(host, f"SELECT deployment, mirrored FROM ledger_events WHERE job_id IN ({marks})", *mirror_ids)

        wait_for(lambda: len(ledger_rows()) == len(mirror_ids))
        assert set(ledger_rows()) == {(SHADOW, 1)}
        events = [json.loads(body) for (body,) in rows(host, "SELECT body FROM usage_log")]
        globex = [e for e in events if e["tenant"] == "globex"]
        assert {(e["endpoint"], e["mirrored"]) for e in globex if e["deployment"] == SHADOW} == {("embed", True)}
        assert {e["endpoint"] for e in globex} == {"embed"}

        def usage() -> dict[str, Any]:
            return c.get("/usage", params=ALL_TIME).json()

        wait_for(lambda: usage()["total_tokens"] == reported)  # what the client was told, not a token more
        assert {i["deployment"] for i in usage()["items"]} <= LIVE


def test_the_deployments_view_counts_requests_errors_latency_tokens_and_cost(host: RunningHost) -> None:
    def view() -> dict[str, dict[str, Any]]:
        with host.client(ADMIN_KEY) as admin:
            r = admin.get("/deployments")
        assert r.status_code == 200, r.text
        (embed,) = (e for e in r.json()["endpoints"] if e["name"] == "embed")
        assert (embed["kind"], embed["traffic"], embed["mirror"]) == (
            "embeddings",
            {"minilm-blue": 50, "minilm-green": 50},
            {SHADOW: 100},
        )
        return {d["name"]: d for d in embed["deployments"]}

    # Outcomes are written in batches, within a second of a job's end: the earlier tests' jobs must be in before
    # this one counts from them. Settled: the same counts as a reading taken more than a flush interval earlier.
    readings: list[tuple[float, dict[str, dict[str, Any]]]] = [(time.monotonic(), view())]

    def settled() -> bool:
        now, current = time.monotonic(), view()
        readings.append((now, current))
        earlier = [r for t, r in readings if now - t >= 1.2]
        counts = [{name: d["requests"] for name, d in r.items()} for r in (earlier[-1:] + [current])]
        return len(counts) == 2 and counts[0] == counts[1]

    wait_for(settled, interval=0.3)
    before = readings[-1][1]
    assert list(before) == ["minilm-blue", "minilm-green", SHADOW]
    with host.client() as c:
        for i in range(4):
            assert c.post("/embeddings", json={"input": f"view {i}", "model": "embed"}).status_code == 200
        for _ in range(2):
            headers = {"azureml-model-deployment": "minilm-green"}
            assert c.post("/embeddings", json={"input": "g", "model": "embed"}, headers=headers).status_code == 200

    def delta(name: str, field: str) -> int:
        return int(view()[name][field] - before[name][field])

    def counts() -> tuple[int, int]:  # mirrored copies, live requests
        return delta(SHADOW, "requests"), delta("minilm-blue", "requests") + delta("minilm-green", "requests")

    wait_for(lambda: counts() == (4, 6))
    after = view()
    assert delta(SHADOW, "mirrored_requests") == 4  # all of its new requests are copies
    assert delta("minilm-green", "requests") >= 2
    for name, d in after.items():
        assert (d["traffic"], d["mirror"]) == (
            {"minilm-blue": 50, "minilm-green": 50}.get(name, 0),
            100 if name == SHADOW else 0,
        )
        assert d["errors"] == 0 and 0 <= d["latency_ms"]["p50"] <= d["latency_ms"]["p95"]
        assert d["tokens"] > 0 and d["usage"] == {"input_tokens": d["tokens"]}
    assert delta(SHADOW, "tokens") > 0 and after[SHADOW]["cost"] == before[SHADOW]["cost"]  # mirrored: never billed
    blue = after["minilm-blue"]  # all live: its cost is its tokens at 0.0001 per 1K
    assert Decimal(blue["cost"]) == Decimal(blue["tokens"]) * Decimal("0.0001") / 1000
    with host.client() as tenant:
        forbidden = tenant.get("/deployments")
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "Forbidden"


def test_an_invalid_endpoint_config_stops_the_host_naming_the_field(tmp_path: Path) -> None:
    bad = ENDPOINTS.replace('"minilm-green" = 50 }', '"minilm-green" = 40 }')
    config = write_config(tmp_path / "bad.toml", after=bad)
    with pytest.raises(RuntimeError, match=r"endpoints\.0\.traffic: traffic weights must sum to 100; they sum to 90"):
        start_host(tmp_path, config=config)
