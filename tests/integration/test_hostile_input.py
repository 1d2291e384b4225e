"""Hostile request bodies at the HTTP edge, in process (TestClient on the SQLite service): keys no UTF-8 can carry,
nesting deep enough to exhaust a recursive renderer, bytes that are not JSON. Each gets a 4xx in the API's error
envelope, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from shared.bootstrap import Inferq
from tests.conftest import KEYS, app_client

ASYNC = {"api-key": KEYS["acme"], "Prefer": "respond-async", "content-type": "application/json"}
CHAT = '"model": "tiny-random-chat", "messages": [{"role": "user", "content": "hi"}]'
VALID = {
    "/embeddings": '"input": "x"',
    "/chat/completions": CHAT,
    "/completions": '"model": "tiny-random-chat", "prompt": "hi"',
    "/score": '"model": "linear-scorer", "data": [[1, 2, 3]]',
}


@pytest.fixture
def client(service: Inferq) -> Iterator[TestClient]:
    with app_client(service) as c:
        yield c


def assert_envelope(r: httpx.Response) -> dict[str, Any]:
    """A 4xx in one of the two documented shapes: 422 `detail` (what the SDKs parse) or `error` {code, message};
    either way with the code in `x-ms-error-code` too (InvalidInput for the `detail` shape)."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    body = r.json()
    if r.status_code == 422:
        assert body["detail"] and all({"loc", "msg", "type", "input"} <= set(d) for d in body["detail"]), body
        assert r.headers["x-ms-error-code"] == "InvalidInput", r.headers
    else:
        assert {"code", "message"} <= set(body["error"]), body
        assert r.headers["x-ms-error-code"] == body["error"]["code"], r.headers
    return body


def queued(service: Inferq) -> list[str]:
    return [m.body for m in service.queue.receive(100, 60)]


@pytest.mark.parametrize("path", ["/embeddings", "/chat/completions", "/completions", "/score"])
def test_a_lone_surrogate_in_a_key_is_422_not_500(client: TestClient, service: Inferq, path: str) -> None:
    r = client.post(path, content=f'{{{VALID[path]}, "x": {{"\\ud800": 1}}}}'.encode(), headers=ASYNC)
    body = assert_envelope(r)
    assert r.status_code == 422
    assert body["detail"][0]["loc"][:2] == ["body", "x"]
    if path != "/score":  # the scoring check names the place without echoing it
        assert "\\ud800" in r.text  # the key is echoed escaped, as values are
    assert queued(service) == []


@pytest.mark.parametrize("path", ["/embeddings", "/chat/completions", "/completions"])
def test_a_surrogate_key_in_a_body_missing_its_required_field_is_422(client: TestClient, path: str) -> None:
    # Pydantic's "missing" error echoes the whole body, keys included.
    r = client.post(path, content=b'{"\\udfff": {"\\ud800": [1]}}', headers=ASYNC)
    assert_envelope(r)
    assert r.status_code == 422


def nested(levels: int, opening: str = '{"a": ', closing: str = "}") -> str:
    return opening * levels + "1" + closing * levels


@pytest.mark.parametrize("path", ["/embeddings", "/chat/completions", "/completions", "/score"])
@pytest.mark.parametrize("levels", [129, 700, 999, 5_000, 200_000])
def test_an_unknown_field_nested_deep_is_422_not_500(
    client: TestClient, service: Inferq, path: str, levels: int
) -> None:
    r = client.post(path, content=f'{{{VALID[path]}, "x": {nested(levels)}}}'.encode(), headers=ASYNC)
    body = assert_envelope(r)
    assert r.status_code == 422
    assert "nested deeper than 128 levels" in body["detail"][0]["msg"]
    assert queued(service) == []


@pytest.mark.parametrize("extra", ["drop", "pass-through"])
@pytest.mark.parametrize("opening", ['{"a": ', "["])
def test_a_body_nested_deep_is_refused_whatever_the_extra_parameters_mode(
    client: TestClient, service: Inferq, extra: str, opening: str
) -> None:
    closing = "}" if opening.startswith("{") else "]"
    content = f'{{{CHAT}, "x": {nested(800, opening, closing)}}}'.encode()
    r = client.post("/chat/completions", content=content, headers={**ASYNC, "extra-parameters": extra})
    assert r.status_code == 422, r.text[:300]
    assert queued(service) == []


def test_nesting_up_to_the_bound_is_still_served(client: TestClient) -> None:
    # 128 levels: the unknown field's echo (past 32 levels shown as "...") in the usual 422, a dropped one ignored.
    content = f'{{{VALID["/embeddings"]}, "x": {nested(127)}}}'.encode()
    refused = client.post("/embeddings", content=content, headers=ASYNC)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "x"]
    assert '"..."' in refused.text
    dropped = client.post("/embeddings", content=content, headers={**ASYNC, "extra-parameters": "drop"})
    assert dropped.status_code == 202, dropped.text[:300]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not json", "Expecting value"),
        (b'{"input": ', "Expecting value"),
        (b"\xff\xfe\xfd", "not valid UTF-8"),
        (b'{"input": "\xc3\x28"}', "not valid UTF-8"),
        (b'{"input": "x", "dimensions": 1' + b"0" * 5000 + b"}", "digits"),
        (b'{"input": "x", "input": "y"}', "duplicate key 'input'"),
        (b'{"input": "x", "user": {"a": 1, "a": 2}}', "duplicate key 'a'"),
        (b'{"input": "x", "\\ud800": 1, "\\ud800": 2}', "duplicate key '\\ud800'"),
        (b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested deeper than 128 levels"),
    ],
)
@pytest.mark.parametrize("path", ["/embeddings", "/score?model=linear-scorer"])
def test_a_body_that_is_not_json_is_422_json_invalid_naming_why(
    client: TestClient, service: Inferq, path: str, content: bytes, reason: str
) -> None:
    r = client.post(path, content=content, headers=ASYNC)
    body = assert_envelope(r)
    assert r.status_code == 422
    (detail,) = body["detail"]
    assert detail["type"] == "json_invalid" and reason in detail["msg"], detail
    assert queued(service) == []


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not json", "Expecting value"),
        (b'{"data": [1], "data": [2]}', "duplicate key 'data'"),
        (b"\xff", "not valid UTF-8"),
        (b'{"data": ' + b"[" * 2000 + b"]" * 2000 + b"}", "nested deeper than 128 levels"),
    ],
)
def test_a_scoring_body_sent_as_a_form_is_parsed_the_same_way(client: TestClient, content: bytes, reason: str) -> None:
    # What `curl -d` sends: not a JSON content type, read as JSON all the same (and refused the same way).
    headers = {**ASYNC, "content-type": "application/x-www-form-urlencoded"}
    r = client.post("/score?model=linear-scorer", content=content, headers=headers)
    body = assert_envelope(r)
    assert r.status_code == 422 and reason in body["detail"][0]["msg"], body


@pytest.mark.parametrize(
    "content",
    [
        b"NaN",
        b'{"input": NaN}',
        b'{"input": "x", "dimensions": Infinity}',
        b'{"input": "x", "dimensions": 1e999}',
        b'{"input": "x", "dimensions": -1e999}',
        b'"input"',
        b"[]",
        b"null",
        b"12",
        b"true",
        b"",
        b"  ",
        b"\xef\xbb\xbf",  # a BOM alone
    ],
)
@pytest.mark.parametrize("path", ["/embeddings", "/chat/completions", "/completions"])
def test_non_finite_numbers_and_non_object_bodies_are_4xx(client: TestClient, path: str, content: bytes) -> None:
    assert_envelope(client.post(path, content=content, headers=ASYNC))


def test_the_same_body_without_tricks_is_accepted(client: TestClient) -> None:
    for path, fields in VALID.items():
        r = client.post(path, content=f"{{{fields}}}".encode(), headers=ASYNC)
        assert r.status_code == 202, (path, r.text)
        assert json.loads(r.text)["status"] == "queued"
