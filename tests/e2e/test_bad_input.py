"""Each bad input gets its documented 4xx, and the host keeps serving afterwards."""

from typing import Any

import httpx
import pytest

from tests.conftest import RunningHost

pytestmark = pytest.mark.e2e

OK = {"input": "fine"}


def detail_locs(r: httpx.Response) -> list[list[Any]]:
    return [d["loc"] for d in r.json()["detail"]]


@pytest.mark.parametrize(
    ("body", "status", "loc"),
    [
        ({"input": "x", "temperature": 1}, 422, ["body", "temperature"]),
        ({"input": "x", "dimensions": 128}, 422, ["body", "dimensions"]),
        ({"input": ""}, 422, ["body", "input", 0]),
        ({"input": []}, 422, ["body", "input"]),
        ({"input": 12}, 422, None),
        ({"input": [1, "a"]}, 422, None),
        ({}, 422, ["body", "input"]),
        ({"input": ["a"] * 2049}, 422, ["body", "input"]),
        ({"input": "a" * 100_001}, 422, ["body", "input", 0]),
        ({"input": "x", "encoding_format": "int4"}, 422, ["body", "encoding_format"]),
    ],
)
def test_invalid_bodies_get_422_naming_the_parameter(host: RunningHost, body: Any, status: int, loc: Any) -> None:
    with host.client() as c:
        r = c.post("/embeddings", json=body)
    assert r.status_code == status, r.text
    if loc is not None:
        assert loc in detail_locs(r)
    for d in r.json()["detail"]:
        assert {"loc", "msg", "type", "input"} <= set(d)


def test_extra_parameters_header(host: RunningHost) -> None:
    body = {"input": "x", "custom_knob": 3}
    with host.client() as c:
        assert c.post("/embeddings", json=body).status_code == 422
        assert c.post("/embeddings", json=body, headers={"extra-parameters": "drop"}).status_code == 200
        passed = c.post("/embeddings", json=body, headers={"extra-parameters": "pass-through"})
        assert passed.status_code == 422 and ["body", "custom_knob"] in detail_locs(passed)
        assert c.post("/embeddings", json=body, headers={"extra-parameters": "maybe"}).status_code == 422


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b'{"input": ', {"content-type": "application/json"}, 422),
        (b"\xff\xfe not json", {"content-type": "application/json"}, 422),  # not UTF-8 (nor UTF-16)
        (b"[1, 2, 3]", {"content-type": "application/json"}, 422),
    ],
)
def test_malformed_json_gets_4xx(host: RunningHost, content: bytes, headers: dict[str, str], status: int) -> None:
    with host.client() as c:
        assert c.post("/embeddings", content=content, headers=headers).status_code == status


def test_unknown_model_is_404_in_the_error_shape(host: RunningHost) -> None:
    with host.client() as c:
        r = c.post("/embeddings", json={"input": "x", "model": "text-embedding-3-large"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "NotFound"
        header = c.post("/embeddings", json={"input": "x"}, headers={"azureml-model-deployment": "nope"})
        assert header.status_code == 404


def test_auth_failures_are_401(host: RunningHost) -> None:
    with host.client(key=None) as c:
        assert c.post("/embeddings", json=OK).status_code == 401
        assert c.post("/embeddings", json=OK, headers={"api-key": "wrong"}).json()["error"]["code"] == "Unauthorized"
        assert c.post("/embeddings", json=OK, headers={"Authorization": "Basic abc"}).status_code == 401


def test_a_body_over_the_limit_is_413_without_being_read_whole(host: RunningHost) -> None:
    big = b'{"input": "' + b"a" * (9 * 1024 * 1024) + b'"}'
    with host.client() as c:
        r = c.post("/embeddings", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "PayloadTooLarge"

        def chunks():  # no Content-Length: the limit is enforced while streaming
            for _ in range(10):
                yield b"a" * (1024 * 1024)

        streamed = c.post("/embeddings", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413


def test_unknown_routes_and_jobs_are_404_in_the_error_shape(host: RunningHost) -> None:
    with host.client() as c:
        assert c.get("/nope").json()["error"]["code"] == "NotFound"
        assert c.get("/jobs/job_missing").status_code == 404


VALID = {
    "/embeddings": '"input": "x"',
    "/chat/completions": '"model": "tiny-random-chat", "messages": [{"role": "user", "content": "hi"}]',
    "/completions": '"model": "tiny-random-chat", "prompt": "hi"',
}
HOSTILE = {
    "surrogate-key": '{"\\ud800": 1}',
    "700-deep": '{"a": ' * 700 + "1" + "}" * 700,
    "999-deep": "[" * 999 + "]" * 999,
    "100000-deep": '{"a": ' * 100_000 + "1" + "}" * 100_000,
}


@pytest.mark.parametrize("path", list(VALID))
@pytest.mark.parametrize("extra", list(HOSTILE))
def test_hostile_unknown_fields_get_422_over_http_not_a_500_or_a_dropped_connection(
    host: RunningHost, path: str, extra: str
) -> None:
    with host.client() as c:
        content = f'{{{VALID[path]}, "x": {HOSTILE[extra]}}}'
        r = c.post(path, content=content, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text[:300]
    assert r.json()["detail"][0]["loc"][0] == "body"


def test_the_host_keeps_serving_after_all_that(host: RunningHost) -> None:
    with host.client() as c:
        assert c.post("/embeddings", json=OK).status_code == 200
    assert "Traceback" not in host.log()
