"""The edges of a job's life on the local host's engine (SQLite, the real model): a sync request is answered by a
signal, with no job-store reads while it waits; an admin key runs no inference; a failure after the model ran
fails the job instead of leaving it running."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.http.app import app as http_api
from functions.local.host import LocalHost
from shared.adapters.sqlite.jobs import SqliteJobStore
from shared.bootstrap import Inferq, bootstrap, set_app
from shared.domain.config import AppConfig
from shared.domain.jobs import Job, JobStatus
from shared.settings import Settings
from tests.conftest import ADMIN_KEY, KEYS


class CountingStore(SqliteJobStore):
    """The SQLite job store, counting reads."""

    gets = 0

    def get(self, job_id: str) -> Job | None:
        CountingStore.gets += 1
        return super().get(job_id)


@pytest.fixture
def running(settings: Settings, config: AppConfig) -> Iterator[tuple[Inferq, TestClient]]:
    from shared.adapters.sqlite.db import SqliteDatabase

    app = bootstrap(settings, config=config, store=CountingStore(SqliteDatabase(settings.db_path)))
    set_app(app)
    host = LocalHost.build(app)
    host.start()
    with TestClient(http_api) as client:
        yield app, client
    host.stop()
    set_app(None)


def test_a_sync_request_is_answered_without_reading_the_job_store_while_it_waits(
    running: tuple[Inferq, TestClient],
) -> None:
    _, client = running
    headers = {"api-key": KEYS["acme"]}
    assert client.post("/embeddings", json={"input": "warm up"}, headers=headers).status_code == 200
    for n in range(5):
        CountingStore.gets = 0
        r = client.post("/embeddings", json={"input": f"sentence {n}"}, headers=headers)
        assert r.status_code == 200, r.text
        # The one read is the worker's, of the job its message names; the waiting request read nothing.
        assert CountingStore.gets == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/embeddings", {"input": "hi"}),
        ("/chat/completions", {"model": "tiny-random-chat", "messages": [{"role": "user", "content": "hi"}]}),
        ("/score", {"model": "linear-scorer", "data": [[1, 2, 3]]}),
    ],
)
def test_an_admin_key_that_is_no_tenants_gets_403_on_inference(
    running: tuple[Inferq, TestClient], path: str, body: dict[str, Any]
) -> None:
    app, client = running
    r = client.post(path, json=body, headers={"api-key": ADMIN_KEY})
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "Forbidden" and "tenant" in r.json()["error"]["message"]
    assert app.queue.receive(1, 1) == []  # nothing was queued


def test_a_failure_after_the_model_ran_fails_the_job_with_the_reason(
    installed: Inferq, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.application import worker as worker_module
    from shared.domain.auth import Caller

    def broken(**_: Any) -> Any:
        raise ValueError("usage event refused")

    monkeypatch.setattr(worker_module, "usage_event", broken)
    job_id = installed.gateway.submit(Caller("acme"), installed.config.default_deployment, {"input": "x"}).job.id
    (message,) = installed.queue.receive(1, 30)
    installed.worker.process(message.body)  # returns: the message is done with, not redelivered into poison
    job = installed.store.get(job_id)
    assert job is not None and job.status is JobStatus.FAILED
    assert job.error is not None and job.error.code == "FinishFailed" and "usage event refused" in job.error.message
