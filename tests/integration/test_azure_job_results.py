"""Where the Azure job store keeps a result (Azurite): in the job's entity while it fits (a string property, then
binary parts), in a blob only beyond the entity's budget; entities written the earlier way still read."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest
from azure.data.tables import TableClient

from shared.adapters.azure.blobs import AzureBlobStore
from shared.adapters.azure.connection import CLIENT_OPTIONS, AzureStorage, StorageConnection
from shared.adapters.azure.jobs import DOC_MAX_PARTS, DOC_PART_BYTES, RESULTS_PREFIX, ROW, AzureJobStore
from shared.adapters.azure.tables import table_key
from shared.domain.jobs import Job, JobStatus
from tests.azurite import Azurite, unique


@pytest.fixture
def store(azurite: Azurite) -> Iterator[AzureJobStore]:
    conn = azurite.connection_string()
    storage = AzureStorage(StorageConnection(connection_string=conn))
    with TableClient.from_connection_string(conn, table_name=unique("jobs"), **CLIENT_OPTIONS) as table:
        yield AzureJobStore(table, AzureBlobStore(storage.container(unique("blobs"))))


def embeddings(n: int, seed: int = 0) -> dict:
    """An embeddings result of n inputs, with float32 values as the runner returns them (about 8 KB of JSON each)."""
    rng = random.Random(seed)
    return {
        "object": "list",
        "data": [{"index": i, "embedding": [rng.uniform(-0.2, 0.2) for _ in range(384)]} for i in range(n)],
    }


def succeeded(store: AzureJobStore, job_id: str, result: dict) -> Job:
    running = store.replace(store.create(Job.new(job_id, "acme", "all-MiniLM-L6-v2")).to(JobStatus.RUNNING))
    return store.replace(running.to(JobStatus.SUCCEEDED, result=result))


def blob_keys(store: AzureJobStore) -> list[str]:
    container = store.blobs.container  # created with the first blob
    return [b.name for b in container.list_blobs()] if container.exists() else []


@pytest.mark.parametrize("inputs", [1, 8, 80])
def test_a_result_that_fits_the_entity_is_kept_in_it_with_no_blob(store: AzureJobStore, inputs: int) -> None:
    result = embeddings(inputs)  # 8: ~66 KB, past a string property; 80: ~663 KB, in binary parts
    assert len(json.dumps(result)) < DOC_PART_BYTES * DOC_MAX_PARTS
    done = succeeded(store, f"job_{inputs}", result)
    fetched, (many,) = store.get(done.id), store.get_many([done.id])
    assert fetched is not None and fetched.result == result and fetched == done
    assert many == done
    assert blob_keys(store) == []
    entity = store.table.get_entity(table_key(done.id), ROW)
    assert ("doc_parts" in entity) is (inputs > 1), sorted(entity)  # one input's document is a readable string


def test_a_result_beyond_the_entity_goes_to_one_blob_and_round_trips(store: AzureJobStore) -> None:
    result = embeddings(100)  # ~829 KB: more than an entity holds
    done = succeeded(store, "job_big", result)
    fetched = store.get(done.id)
    assert fetched is not None and fetched.result == result
    (key,) = blob_keys(store)
    assert key.startswith(f"{RESULTS_PREFIX}/")
    again = store.replace(fetched.published())  # a later write keeps its result and adds no blob
    assert store.get(done.id) == again and blob_keys(store) == [key]


def test_a_job_whose_result_was_stored_in_a_blob_the_earlier_way_still_reads(store: AzureJobStore) -> None:
    result = embeddings(8)
    done = succeeded(store, "job_old", {"pending": True})
    key = f"{RESULTS_PREFIX}/{table_key(done.id)}/old.json"
    store.blobs.put(key, json.dumps(result).encode())
    old = done.model_copy(update={"result": None}).model_dump_json(exclude={"etag"})  # the document without it
    entity = {"PartitionKey": table_key(done.id), "RowKey": ROW, "tenant": "acme", "status": "succeeded"}
    store.table.upsert_entity(entity | {"usage_published": True, "doc": old, "result_ref": key}, mode="replace")
    fetched = store.get(done.id)
    assert fetched is not None and fetched.result == result and fetched.status is JobStatus.SUCCEEDED
