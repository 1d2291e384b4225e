"""The local host on Azure Storage (Azurite): `INFERQ_BACKEND=azure AzureWebJobsStorage=<Azurite> make run`
serves /embeddings sync and async, with jobs on the Azure queue and in the Azure jobs table."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import pytest
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from shared.bindings import JOB_QUEUE, JOBS_TABLE
from tests.azurite import Azurite
from tests.conftest import RunningHost, start_host, stop_host, wait_for

pytestmark = pytest.mark.e2e
IDLE_S = 15


@pytest.fixture(scope="module")
def azure_host(tmp_path_factory: pytest.TempPathFactory, azurite: Azurite) -> Iterator[tuple[RunningHost, str]]:
    connection = azurite.fresh_connection_string()
    env = {"INFERQ_BACKEND": "azure", "AzureWebJobsStorage": connection, "EventHubConnection": ""}
    host = start_host(tmp_path_factory.mktemp("azure-host"), env=env)
    yield host, connection
    stop_host(host)


def unit_vectors(body: dict) -> list[np.ndarray]:
    vectors = [np.array(item["embedding"]) for item in body["data"]]
    assert all(v.shape == (384,) and math.isclose(float(np.linalg.norm(v)), 1.0, abs_tol=1e-5) for v in vectors)
    return vectors


def test_sync_embeddings_on_azure_storage(azure_host: tuple[RunningHost, str]) -> None:
    host, connection = azure_host
    with host.client() as c:
        r = c.post("/embeddings", json={"input": ["A man is eating food.", "Someone is having a meal."]})
    assert r.status_code == 200, r.text + host.log()
    a, b = unit_vectors(r.json())
    assert float(a @ b) > 0.5
    job = TableClient.from_connection_string(connection, JOBS_TABLE).get_entity(r.json()["id"], "job")
    assert job["status"] == "succeeded" and job["tenant"] == "acme"
    assert "no Event Hubs connection" in host.log()  # usage stays embedded, with a warning


def test_async_embeddings_on_azure_storage(azure_host: tuple[RunningHost, str]) -> None:
    host, connection = azure_host
    with host.client() as c:
        r = c.post("/embeddings", json={"input": "async on azure"}, headers={"Prefer": "respond-async"})
        assert r.status_code == 202, r.text
        location = r.headers["Operation-Location"]
        wait_for(lambda: c.get(location).json()["status"] == "succeeded", timeout=60)
        (v,) = unit_vectors(c.get(location).json()["result"])
        assert v.shape == (384,)
    queue = QueueClient.from_connection_string(connection, JOB_QUEUE)
    wait_for(lambda: (queue.get_queue_properties().approximate_message_count or 0) == 0)


def test_a_large_request_goes_through_the_azure_queue_by_claim_check(azure_host: tuple[RunningHost, str]) -> None:
    host, _ = azure_host
    inputs = [f"passage {i}: " + "the quick brown fox jumps over the lazy dog " * 56 for i in range(40)]
    with host.client(timeout=120) as c:
        r = c.post("/embeddings", json={"input": inputs})
    assert r.status_code == 200, r.text
    assert len(unit_vectors(r.json())) == 40


def test_each_job_transition_logs_one_line_with_its_id(azure_host: tuple[RunningHost, str]) -> None:
    host, _ = azure_host
    with host.client() as c:
        r = c.post("/embeddings", json={"input": "log my transitions"})
    assert r.status_code == 200, r.text
    job_id = r.json()["id"]
    wait_for(lambda: f"job.succeeded job={job_id}" in host.log())
    lines = [line for line in host.log().splitlines() if f"job={job_id} " in line]
    events = [line.split("job.", 1)[1].split(" ", 1)[0] for line in lines]
    assert events == ["accepted", "started", "succeeded"], lines
    assert all("tenant=acme deployment=all-MiniLM-L6-v2" in line for line in lines)
    assert "duration_ms=" in lines[-1]


def test_an_idle_host_logs_less_than_a_kilobyte_a_minute(azure_host: tuple[RunningHost, str]) -> None:
    host, _ = azure_host
    with host.client() as c:  # a job of its own, then settle: it (and the earlier tests' jobs) finished and billed
        job_id = c.post("/embeddings", json={"input": "then idle"}).json()["id"]
    wait_for(lambda: f"job.billed job={job_id}" in host.log(), timeout=60)
    before = len(host.log().encode())
    time.sleep(IDLE_S)  # the thing measured is an idle stretch: nothing to wait for but time
    grown = len(host.log().encode()) - before
    assert grown * 60 / IDLE_S < 1024, host.log()[before:]
