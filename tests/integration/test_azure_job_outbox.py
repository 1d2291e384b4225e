"""The Azure job store's outbox (Azurite): jobs with unpublished usage are found by reading one partition, not by
scanning the jobs table; the entry is written before the job and deleted after it, and an entry left behind is
skipped and deleted without ever dropping one a concurrent writer needs. Requests are observed on the wire."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from azure.data.tables import TableClient

from shared.adapters.azure.blobs import AzureBlobStore
from shared.adapters.azure.connection import CLIENT_OPTIONS, AzureStorage, StorageConnection
from shared.adapters.azure.jobs import OUTBOX, AzureJobStore
from shared.adapters.azure.tables import table_key
from shared.domain.errors import ConcurrencyConflict
from shared.domain.jobs import Job, JobStatus
from shared.schemas.usage import Meter, usage_event
from tests.azurite import Azurite, unique


@dataclass
class Wire:
    """Every request the store's table client sends: (method, path, $filter)."""

    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    before_job_write: Callable[[], None] | None = None  # run once, just before the next job entity is written

    def __call__(self, request: Any) -> None:
        http = request.http_request
        parts = urlsplit(http.url)
        filters = parse_qs(parts.query).get("$filter")
        path = unquote(parts.path)
        self.requests.append((http.method, path, filters[0] if filters else None))
        if self.before_job_write and http.method == "PUT" and path.endswith(",RowKey='job')"):
            action, self.before_job_write = self.before_job_write, None
            action()

    def touching(self, key: str) -> list[tuple[str, str]]:
        """(method, "job" or "outbox") of the requests on one job's entity and its outbox entry, in order."""
        found = []
        for method, path, _ in self.requests:
            if f"(PartitionKey='{key}',RowKey='job')" in path:
                found.append((method, "job"))
            elif f"(PartitionKey='{OUTBOX}',RowKey='{key}')" in path:
                found.append((method, "outbox"))
        return found


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
def store(azurite: Azurite, wire: Wire) -> Iterator[AzureJobStore]:
    conn = azurite.connection_string()
    table = TableClient.from_connection_string(conn, table_name=unique("jobs"), raw_request_hook=wire, **CLIENT_OPTIONS)
    storage = AzureStorage(StorageConnection(connection_string=conn))
    with table:
        yield AzureJobStore(table, AzureBlobStore(storage.container(unique("blobs"))))


def billed(job: Job) -> Job:
    event = usage_event(
        job_id=job.id, tenant=job.tenant, endpoint="d", deployment="d", model="m", meter=Meter.INPUT_TOKENS,
        tokens=7, time=datetime(2024, 5, 1, 10, 30, tzinfo=UTC),
    )  # fmt: skip
    return job.to(JobStatus.SUCCEEDED, usage=(event,), usage_published=False)


def running(store: AzureJobStore, job_id: str) -> Job:
    return store.replace(store.create(Job.new(job_id, "acme", "all-MiniLM-L6-v2")).to(JobStatus.RUNNING))


def outbox_keys(store: AzureJobStore) -> set[str]:
    entries = store.table.query_entities("PartitionKey eq @p", parameters={"p": OUTBOX})
    return {e["RowKey"] for e in entries}


def test_unpublished_usage_reads_the_outbox_partition_and_point_reads_its_jobs(
    store: AzureJobStore, wire: Wire
) -> None:
    for i in range(30):
        store.replace(running(store, f"job_done{i:02d}").to(JobStatus.SUCCEEDED, result={"ok": True}))
    pending = {store.replace(billed(running(store, job_id))).id for job_id in ("job_p1", "job/p2#odd")}
    wire.requests.clear()

    assert {j.id for j in store.unpublished_usage(10)} == pending

    queries = [f for method, _, f in wire.requests if method == "GET" and f is not None]
    assert queries == [f"PartitionKey eq '{OUTBOX}'"]  # one partition: an index lookup, no property filter
    reads = sorted(path.rsplit("/", 1)[-1] for method, path, f in wire.requests if f is None)
    assert reads == sorted(f"{store.table.table_name}(PartitionKey='{table_key(i)}',RowKey='job')" for i in pending)
    assert len(wire.requests) == 1 + len(pending)  # nothing else: no scan of the 30 published jobs


def test_the_entry_is_written_before_the_job_and_deleted_after_it(store: AzureJobStore, wire: Wire) -> None:
    job = running(store, "job_order")
    wire.requests.clear()
    done = store.replace(billed(job))
    assert wire.touching("job_order") == [("PUT", "outbox"), ("PUT", "job")]  # a crash between: entry, no usage
    wire.requests.clear()
    store.replace(done.published())
    # read, job written, then deleted if unchanged: a crash between the writes leaves a stale entry, never none
    assert wire.touching("job_order") == [("GET", "outbox"), ("PUT", "job"), ("DELETE", "outbox")]
    assert outbox_keys(store) == set()


def test_an_entry_left_behind_is_skipped_and_deleted_and_real_ones_kept(store: AzureJobStore) -> None:
    # A crash after the job write that published the usage, before the entry's delete: entry without usage.
    published = store.replace(billed(running(store, "job_crashed")))
    store.replace(published.published())
    store.table.upsert_entity({"PartitionKey": OUTBOX, "RowKey": table_key("job_crashed")})
    # A write of unpublished usage that lost its race: marked, never written.
    lost = running(store, "job_lost")
    store.replace(lost.to(JobStatus.RUNNING, attempts=2))
    with pytest.raises(ConcurrencyConflict):
        store.replace(billed(lost))
    # An entry whose job does not exist (a create that failed): skipped, kept (a create may be in flight).
    store.table.upsert_entity({"PartitionKey": OUTBOX, "RowKey": "job_never"})
    real = store.replace(billed(running(store, "job_real")))
    assert outbox_keys(store) == {"job_crashed", "job_lost", "job_never", "job_real"}

    assert [j.id for j in store.unpublished_usage(10)] == ["job_real"]
    assert outbox_keys(store) == {"job_never", "job_real"}
    (again,) = store.unpublished_usage(10)
    assert again.id == real.id and again.usage == real.usage


def test_a_writer_holding_the_etag_the_sweep_read_cannot_unpublish_behind_its_delete(store: AzureJobStore) -> None:
    # The writer marked the entry and is about to write the job with the ETag it read; the sweep reads that entry
    # and the still-published job. Were the sweep to delete the entry and the write then land, the usage would
    # have no entry: the sweep rewrites the job first, so the write fails and is retried after a fresh read.
    published = store.replace(store.replace(billed(running(store, "job_race"))).published())
    writer_view = store.get("job_race")
    assert writer_view is not None and writer_view.etag == published.etag
    store.table.upsert_entity({"PartitionKey": OUTBOX, "RowKey": "job_race"})  # the writer's mark

    assert store.unpublished_usage(10) == []  # the sweep: job published, entry looks stale
    with pytest.raises(ConcurrencyConflict):
        store.replace(writer_view.model_copy(update={"usage_published": False}))
    fresh = store.get("job_race")
    assert fresh is not None
    store.replace(fresh.model_copy(update={"usage_published": False}))
    assert [j.id for j in store.unpublished_usage(10)] == ["job_race"]


def test_publishing_never_deletes_an_entry_marked_again_meanwhile(
    azurite: Azurite, store: AzureJobStore, wire: Wire
) -> None:
    # Between the entry's read and its delete another writer marks it again (about to unpublish usage once more,
    # as far as the store can tell): the delete is conditional on the entry read, so the new mark survives.
    done = store.replace(billed(running(store, "job_remarked")))
    other = TableClient.from_connection_string(azurite.connection_string(), table_name=store.table.table_name)
    with other:
        wire.before_job_write = lambda: other.upsert_entity({"PartitionKey": OUTBOX, "RowKey": "job_remarked"})
        store.replace(done.published())
    assert wire.before_job_write is None and wire.touching("job_remarked")[-1] == ("DELETE", "outbox")
    assert outbox_keys(store) == {"job_remarked"}
    assert store.unpublished_usage(10) == []  # and once the job is seen published, the sweep deletes it
    assert outbox_keys(store) == set()


def test_usage_published_before_the_final_write_touches_no_outbox_entry(store: AzureJobStore, wire: Wire) -> None:
    job = running(store, "job_first")
    event = billed(job).usage
    wire.requests.clear()
    store.replace(job.to(JobStatus.SUCCEEDED, usage=event, usage_published=True))
    assert wire.touching("job_first") == [("PUT", "job")]  # one write: nothing kept, so nothing to retire
    assert outbox_keys(store) == set()
