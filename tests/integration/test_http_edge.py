"""Bad input at the HTTP edge, in process (FastAPI TestClient on the SQLite service): whatever the body, the
answer is a documented 4xx in its documented shape, never a 500, and a refused request leaves no job behind."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.bootstrap import Inferq
from shared.domain.errors import StorageUnavailable
from shared.domain.jobs import JobStatus
from tests.conftest import KEYS, app_client

ASYNC = {"api-key": KEYS["acme"], "Prefer": "respond-async", "content-type": "application/json"}


@pytest.fixture
def client(service: Inferq) -> Iterator[TestClient]:
    with app_client(service) as c:
        yield c


def queued_jobs(service: Inferq) -> list[str]:
    return [m.body for m in service.queue.receive(100, 60)]


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("/embeddings", b'{"input": "x", "stream": Infinity}'),  # an extra parameter, echoed in the 422
        ("/embeddings", b'{"input": NaN}'),  # a validation error, echoed in the 422
        ("/completions", b'{"prompt": "hi", "stop": -Infinity}'),
        ("/chat/completions", b'{"messages": [{"role": "user", "content": "hi"}], "frequency_penalty": NaN}'),
        ("/score?model=linear-scorer", b'{"data": [1], "model": NaN}'),
    ],
)
def test_non_finite_numbers_in_a_bad_body_get_422_not_500(client: TestClient, path: str, content: bytes) -> None:
    r = client.post(path, content=content, headers=ASYNC)
    assert r.status_code == 422, r.text
    assert {"loc", "msg", "type", "input"} <= set(r.json()["detail"][0])


def test_a_scoring_body_sent_without_a_json_content_type_is_scored_as_json(client: TestClient, service: Inferq) -> None:
    # What `curl -d '{...}'` sends: application/x-www-form-urlencoded.
    headers = {**ASYNC, "content-type": "application/x-www-form-urlencoded"}
    r = client.post("/score?model=linear-scorer", content=b'{"data": [[1, 2, 3]]}', headers=headers)
    assert r.status_code == 202, r.text
    payload = json.loads(queued_jobs(service)[0])["payload"]  # the bytes as sent, for run() to get unchanged
    assert (base64.b64decode(payload["body"]), payload["json_body"]) == (b'{"data": [[1, 2, 3]]}', True)
    refused = client.post("/score?model=linear-scorer", content=b"not json", headers=headers)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body"]


def test_score_without_a_model_goes_to_the_only_scoring_endpoint(client: TestClient) -> None:
    r = client.post("/score", json={"data": [[1, 2, 3]]}, headers=ASYNC)  # the default endpoint embeds
    assert r.status_code == 202, r.text
    assert (r.json()["endpoint"], r.headers["azureml-model-deployment"]) == ("linear-scorer", "linear-scorer")
    pinned = client.post("/score", json={}, headers={**ASYNC, "azureml-model-deployment": "linear-scorer"})
    assert pinned.status_code == 202 and pinned.json()["deployment"] == "linear-scorer"


@pytest.mark.parametrize(
    "content",
    [
        b'{"data": ' + b"[" * 100 + b"]" * 100 + b"}",  # deeper than a scoring job takes (the body allows 128)
        b'{"data": {"x": NaN}}',  # not JSON: the message would carry null instead
        b'{"data": [Infinity]}',
    ],
)
def test_a_scoring_body_a_job_cannot_carry_is_422_and_leaves_no_job(
    client: TestClient, service: Inferq, content: bytes
) -> None:
    headers = {**ASYNC, "Idempotency-Key": "k1"}
    r = client.post("/score?model=linear-scorer", content=content, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][:2] == ["body", "data"]
    assert queued_jobs(service) == []
    # The key is still free: a good request with it is a new job, not a stuck one.
    ok = client.post("/score?model=linear-scorer", json={"data": [[1, 2, 3]]}, headers=headers)
    assert ok.status_code == 202 and ok.json()["status"] == "queued"


def test_a_claim_check_payload_that_cannot_be_stored_fails_its_job(
    client: TestClient, service: Inferq, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blob write fails after the job was recorded: the job must not stay queued with no message."""

    def unavailable(key: str, data: bytes) -> None:
        raise StorageUnavailable("blob store down")

    monkeypatch.setattr(service.blobs, "put", unavailable)
    big: dict[str, Any] = {"input": ["word " * 2000] * 10}  # over the inline limit: claim-check
    r = client.post("/embeddings", json=big, headers={**ASYNC, "Idempotency-Key": "big"})
    assert r.status_code == 503 and r.headers["Retry-After"]
    job = service.store.get(service_job_id(service, "big"))
    assert job is not None and job.status is JobStatus.FAILED and job.error is not None
    assert job.error.code == "EnqueueFailed"


def service_job_id(service: Inferq, key: str) -> str:
    from shared.domain.jobs import new_job_id

    return new_job_id("acme", key)


def test_the_deployments_view_ending_at_the_first_representable_day_is_422_not_500(client: TestClient) -> None:
    from tests.conftest import ADMIN_KEY

    r = client.get("/deployments", params={"to": "0001-01-01"}, headers={"api-key": ADMIN_KEY})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["query", "to"]


@pytest.mark.parametrize(
    ("path", "content", "loc"),
    [  # JSON escapes can spell lone surrogates, which no UTF-8 message, response or tokenizer can carry
        ("/embeddings", b'{"input": "a\\ud800b"}', ["body", "input"]),
        ("/embeddings", b'{"input": ["ok", "\\udfff"]}', ["body", "input", 1]),
        ("/embeddings", b'{"input": "x", "user": "\\ud800"}', ["body", "user"]),
        ("/embeddings", b'{"input": "x", "bad\\ud800": 1}', None),  # echoed in the extra-parameter 422
        ("/embeddings", b'{"input": "x", "dimensions": "\\ud800"}', None),  # echoed in pydantic's 422
        ("/chat/completions", b'{"model":"tiny-random-chat","messages":[{"role":"user","content":"\\udfff"}]}', None),
        ("/completions", b'{"model": "tiny-random-chat", "prompt": "x", "stop": "\\ud800"}', ["body", "stop"]),
        ("/score?model=linear-scorer", b'{"data": ["\\ud800"]}', ["body", "data", 0]),
    ],
)
def test_a_lone_surrogate_anywhere_in_the_body_is_422_not_500(
    client: TestClient, service: Inferq, path: str, content: bytes, loc: list[Any] | None
) -> None:
    r = client.post(path, content=content, headers=ASYNC)
    assert r.status_code == 422, r.text
    if loc is not None:
        assert r.json()["detail"][0]["loc"] == loc
    assert queued_jobs(service) == []


def test_a_sync_request_whose_job_is_cancelled_meanwhile_gets_409_in_the_error_shape(
    client: TestClient, service: Inferq
) -> None:
    import threading

    from shared.domain.auth import Caller
    from tests.conftest import wait_for

    job_id = service_job_id(service, "cancel-me")
    answers: list[Any] = []
    headers = {"api-key": KEYS["acme"], "Idempotency-Key": "cancel-me"}  # sync: waits for the job (no worker runs)
    waiting = threading.Thread(
        target=lambda: answers.append(client.post("/embeddings", json={"input": "x"}, headers=headers))
    )
    waiting.start()
    wait_for(lambda: service.store.get(job_id) is not None)
    service.gateway.cancel(Caller("acme"), job_id)
    waiting.join(30)
    (r,) = answers
    assert r.status_code == 409
    assert r.json()["error"]["code"] and r.json()["error"]["message"]  # what the SDKs read from an error
    assert r.headers["x-inferq-job-id"] == job_id


def test_a_sync_request_whose_job_the_worker_refuses_as_bad_input_gets_the_422_shape(
    client: TestClient, service: Inferq, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from shared.domain.errors import ConfigError
    from tests.conftest import wait_for

    def no_counter(deployment: object) -> None:
        raise ConfigError("no tokenizer at the edge")  # the edge can't count: the worker's check decides

    monkeypatch.setattr(service.registry, "edge_tool", no_counter)
    body = {"model": "tiny-random-chat", "prompt": "word " * 600}  # more than the 512-token context
    answers: list[Any] = []
    headers = {"api-key": KEYS["acme"]}
    waiting = threading.Thread(target=lambda: answers.append(client.post("/completions", json=body, headers=headers)))
    waiting.start()
    messages: list[Any] = []
    wait_for(lambda: bool(messages.extend(service.queue.receive(1, 60)) or messages))
    service.worker.process(messages[0].body)
    waiting.join(30)
    (r,) = answers
    assert r.status_code == 422, r.text
    (detail,) = r.json()["detail"]  # 422 is always the detail shape the clients parse
    assert {"loc", "msg", "type", "input"} <= set(detail) and "context" in detail["msg"]
