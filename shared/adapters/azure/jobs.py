"""The job store on Table storage: one entity per job, written only if its ETag is unchanged.

A job's document is a string property while it fits one (64 KiB of UTF-16: 32 Ki characters, readable in Storage
Explorer); a larger one (the embeddings of a few inputs already) is split into binary properties of UTF-8, up to
DOC_MAX_PARTS of them, well inside an entity's 1 MiB: one table write, where a result blob is a write and a read
more, the write Storage's dearest transaction. Only a result too large for that is kept in Blob storage under a
content-addressed key, the entity referring to it; so is the rest of a document still too large without its
result (a failed job with a very long error message).

Jobs whose usage is unpublished are found through an outbox: one small entity per such job in the partition
`OUTBOX` of the same table (RowKey = the job's key), so the timer that publishes them reads one partition instead
of scanning every job. Written before the job write that sets `usage_published` False and deleted after the one
that sets it True, an entry is never missing while usage waits; an entry left behind (a crash between the two
writes, a write that lost its ETag race) is skipped and deleted by the next sweep. Deletes are conditional, so
one can't remove an entry a concurrent writer needs (see `_retire`). An entry whose job was never created (a
`create` of a job with unpublished usage that failed; the service never creates one) is skipped and kept.

A job's queue message is kept the same way until it is on the queue: an entity in the partition `UNSENT`
(RowKey = the job's key) inserted before the job and deleted once the message is sent, so a kill between the two
steps leaves the message to be re-sent. Inserted, never overwritten: a repeat of an existing job's id must not
replace that job's message; an entry left by a repeat that then found the job exists names the repeat's request
hash, which the sender compares with the job's before sending anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.adapters.azure.blobs import AzureBlobStore
from shared.adapters.azure.connection import CreateOnce
from shared.adapters.azure.errors import translated
from shared.adapters.azure.probe import PING_TIMEOUT_S
from shared.adapters.azure.tables import ping_table, table_key
from shared.domain.errors import ConcurrencyConflict, Conflict, NotFound, StorageUnavailable
from shared.domain.jobs import Job, utcnow
from shared.domain.ports import UnsentMessage

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableEntity

log = logging.getLogger(__name__)

ROW = "job"
# No job's PartitionKey: `table_key` gives a plain id (never starting with "~") or "~" and 64 hex digits.
OUTBOX = "~outbox"
UNSENT = "~unsent"
INLINE_DOC_MAX_BYTES = 60 * 1024  # UTF-16, as the service counts a string property (limit 64 KiB)
DOC_PART_BYTES = 64_000  # a binary property holds 64 KiB
# 704,000 bytes: sent as base64 with the entity's other properties, under the 1 MiB an entity holds (Azurite
# measures the request body against it; the service counts the bytes).
DOC_MAX_PARTS = 11
RESULTS_PREFIX = "results"
BATCH_GET = 14  # partition keys one query ORs together: with the RowKey test, the 15 comparisons a filter may hold


class AzureJobStore:
    ping_timeout_s = PING_TIMEOUT_S

    def __init__(self, table: TableClient, blobs: AzureBlobStore) -> None:
        self.table = table
        self.blobs = blobs
        self._create = CreateOnce(f"table {table.table_name}", table.create_table)
        self._written: OrderedDict[str, None] = OrderedDict()  # result blobs this process knows exist
        self._lock = threading.Lock()

    def ping(self) -> None:
        ping_table(self.table, self.ping_timeout_s)

    def create(self, job: Job, message: str | None = None) -> Job:
        entity = self._entity(job)
        self._create()
        if not job.usage_published:
            self._mark(job.id)
        kept = None if message is None else self._keep(job, message)
        try:
            with translated(f"job {job.id}"):
                metadata = self.table.create_entity(entity)
        except Conflict:
            if kept:  # this repeat's entry, for a job that has its own message: best effort, the sender checks
                self._drop(table_key(job.id), kept)
            raise
        if message is not None and kept is None:  # an entry left by an attempt that never created the job
            with translated(f"unsent message of job {job.id}"):
                self.table.upsert_entity(self._unsent_entity(job, message), mode=UpdateMode.REPLACE)
        return job.model_copy(update={"etag": metadata["etag"]})

    def sent(self, job_id: str) -> None:
        with translated(f"unsent message of job {job_id}"):
            self.table.delete_entity(UNSENT, table_key(job_id))  # a missing entry is no error for delete_entity

    def unsent(self, job_id: str) -> UnsentMessage | None:
        self._create()
        try:
            with translated(f"unsent message of job {job_id}"):
                return _unsent(self.table.get_entity(UNSENT, table_key(job_id)))
        except NotFound:
            return None

    def unsent_before(self, before: datetime, limit: int) -> list[UnsentMessage]:
        if limit <= 0:
            return []
        self._create()
        found: list[UnsentMessage] = []
        with translated("unsent messages"):
            entries = self.table.query_entities(
                "PartitionKey eq @unsent and since lt @before",
                parameters={"unsent": UNSENT, "before": before},
                results_per_page=min(limit, 1000),
            )
            for entry in entries:
                found.append(_unsent(entry))
                if len(found) == limit:
                    break
        return found

    def claim(self, message: UnsentMessage) -> bool:
        try:
            with translated(f"unsent message of job {message.job_id}"):
                self.table.update_entity(
                    {"PartitionKey": UNSENT, "RowKey": table_key(message.job_id), "since": utcnow()},
                    mode=UpdateMode.MERGE,
                    etag=message.version,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ConcurrencyConflict, NotFound):
            return False
        return True

    def _keep(self, job: Job, message: str) -> str | None:
        """Insert the job's unsent message; its ETag, or None when an entry for this id exists already."""
        try:
            with translated(f"unsent message of job {job.id}"):
                return str(self.table.create_entity(self._unsent_entity(job, message))["etag"])
        except Conflict:
            return None

    def _drop(self, key: str, etag: str) -> None:
        try:
            with translated(f"unsent message {key}"):
                self.table.delete_entity(UNSENT, key, etag=etag, match_condition=MatchConditions.IfNotModified)
        except (ConcurrencyConflict, StorageUnavailable) as exc:
            log.warning("unsent message %s left for the sender to drop: %s", key, exc)

    @staticmethod
    def _unsent_entity(job: Job, message: str) -> dict[str, Any]:
        # Binary: a queue message may hold 64 KiB, a string property only 32 Ki UTF-16 characters.
        return {
            "PartitionKey": UNSENT,
            "RowKey": table_key(job.id),
            "job_id": job.id,
            "request_hash": job.request_hash,
            "body": message.encode("utf-8"),
            "since": utcnow(),
        }

    def get(self, job_id: str) -> Job | None:
        self._create()
        try:
            with translated(f"job {job_id}"):
                entity = self.table.get_entity(table_key(job_id), ROW)
        except NotFound:
            return None
        return self._job(entity)

    def get_many(self, job_ids: Sequence[str]) -> list[Job]:
        """One query per BATCH_GET ids (an OR of partition keys; a query is one transaction per page)."""
        self._create()
        found: list[Job] = []
        for start in range(0, len(job_ids), BATCH_GET):
            chunk = job_ids[start : start + BATCH_GET]
            parameters = {f"p{i}": table_key(job_id) for i, job_id in enumerate(chunk)}
            keys = " or ".join(f"PartitionKey eq @p{i}" for i in range(len(chunk)))
            with translated("jobs being waited for"):
                entities = list(
                    self.table.query_entities(f"RowKey eq @row and ( {keys} )", parameters={**parameters, "row": ROW})
                )
            found.extend(self._job(entity) for entity in entities)
        return found

    def replace(self, job: Job) -> Job:
        if job.etag is None:
            raise ConcurrencyConflict(f"job {job.id} has no etag: read it before writing it")
        entity = self._entity(job)
        self._create()
        entry_etag = None
        if not job.usage_published:
            self._mark(job.id)
        elif job.releases_kept_usage:  # kept usage just published (other entries are the sweep's to retire)
            entry_etag = self._entry_etag(job.id)
        try:
            with translated(f"job {job.id}"):
                metadata = self.table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=job.etag, match_condition=MatchConditions.IfNotModified
                )
        except NotFound as exc:
            raise ConcurrencyConflict(f"job {job.id} no longer exists") from exc
        if entry_etag is not None:
            # Read before this write: a writer that set usage_published False since must have read this write's
            # ETag first and marked the entry after it, so this delete fails rather than drop its entry.
            self._unmark(table_key(job.id), entry_etag)
        return job.model_copy(update={"etag": metadata["etag"]})

    def unpublished_usage(self, limit: int) -> list[Job]:
        if limit <= 0:
            return []
        self._create()
        found: list[Job] = []
        with translated("jobs with unpublished usage"):
            entries = self.table.query_entities(
                "PartitionKey eq @outbox", parameters={"outbox": OUTBOX}, results_per_page=min(limit, 1000)
            )
            for entry in entries:
                job = self._pending(entry)
                if job is not None:
                    found.append(job)
                    if len(found) == limit:
                        break
        return found

    def _mark(self, job_id: str) -> None:
        with translated(f"outbox entry of job {job_id}"):
            self.table.upsert_entity({"PartitionKey": OUTBOX, "RowKey": table_key(job_id)}, mode=UpdateMode.REPLACE)

    def _entry_etag(self, job_id: str) -> str | None:
        try:
            with translated(f"outbox entry of job {job_id}"):
                return str(self.table.get_entity(OUTBOX, table_key(job_id)).metadata["etag"])
        except NotFound:
            return None
        except StorageUnavailable as exc:  # the write goes on; the entry, if any, is left for the sweep
            log.warning("outbox entry of job %s left for the sweep: %s", job_id, exc)
            return None

    def _unmark(self, key: str, entry_etag: str) -> None:
        try:
            with translated(f"outbox entry {key}"):
                self.table.delete_entity(
                    OUTBOX, key, etag=entry_etag, match_condition=MatchConditions.IfNotModified
                )  # a missing entry is no error for delete_entity
        except ConcurrencyConflict:
            pass  # marked again since it was read: the entry is a writer's now
        except StorageUnavailable as exc:  # the job write stands; the entry is stale and the sweep deletes it
            log.warning("outbox entry %s left for the sweep: %s", key, exc)

    def _pending(self, entry: TableEntity) -> Job | None:
        """The job of an outbox entry if its usage is unpublished; else None, deleting the entry if it is stale."""
        key = entry["RowKey"]
        try:
            entity = self.table.get_entity(key, ROW)
        except ResourceNotFoundError:
            return None  # never created (see the module docstring), or a create still in flight: keep the entry
        if entity["usage_published"] is False:
            return self._job(entity)
        self._retire(key, str(entity.metadata["etag"]), str(entry.metadata["etag"]))
        return None

    def _retire(self, key: str, job_etag: str, entry_etag: str) -> None:
        """Delete a stale entry: its job is published. A writer may be about to set usage_published False with the
        ETag this sweep read, its entry already marked before the sweep read `entry_etag`: rewriting the job
        unchanged first makes that write fail; a writer that succeeds later read the job after this rewrite and
        marks the entry after that, so the conditional delete fails instead of dropping its entry."""
        try:
            with translated(f"outbox entry {key}"):
                self.table.update_entity(
                    {"PartitionKey": key, "RowKey": ROW},
                    mode=UpdateMode.MERGE,
                    etag=job_etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            self._unmark(key, entry_etag)
        except (ConcurrencyConflict, NotFound):
            pass  # the job was written since it was read: the next sweep looks again

    def _entity(self, job: Job) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": table_key(job.id),
            "RowKey": ROW,
            "tenant": job.tenant,
            "status": job.status.value,
            "usage_published": job.usage_published,
        }
        doc = job.model_dump_json(exclude={"etag"})
        inline = _inline(doc)
        if inline is None and job.result is not None:
            entity["result_ref"] = self._put_blob(job.id, json.dumps(job.result, separators=(",", ":")))
            doc = job.model_copy(update={"result": None}).model_dump_json(exclude={"etag"})
            inline = _inline(doc)
        if inline is None:  # still: an error message of any length (a scoring script's exception, say)
            entity["doc_ref"] = self._put_blob(job.id, doc)
            inline = {"doc": ""}
        return entity | inline

    def _put_blob(self, job_id: str, text: str) -> str:
        data = text.encode("utf-8")
        # Content-addressed: rewriting a job (its usage published, say) reuses the blob, and a writer that loses
        # the ETag race never overwrites the winner's result.
        key = f"{RESULTS_PREFIX}/{table_key(job_id)}/{hashlib.sha256(data).hexdigest()[:32]}.json"
        with self._lock:
            if key in self._written:
                return key
        self.blobs.put(key, data)
        with self._lock:
            self._written[key] = None
            while len(self._written) > 1024:
                self._written.popitem(last=False)
        return key

    def _job(self, entity: TableEntity) -> Job:
        doc_ref, parts = entity.get("doc_ref"), entity.get("doc_parts")
        if doc_ref:
            doc: str | bytes = self.blobs.get(doc_ref)
        elif parts:
            doc = b"".join(_binary(entity[f"doc_{i}"]) for i in range(parts))
        else:
            doc = entity["doc"]
        job = Job.model_validate_json(doc)
        ref = entity.get("result_ref")
        if ref:
            job = job.model_copy(update={"result": json.loads(self.blobs.get(ref))})
        return job.model_copy(update={"etag": entity.metadata["etag"]})


def _unsent(entity: TableEntity) -> UnsentMessage:
    body = entity["body"]
    return UnsentMessage(
        job_id=entity["job_id"],
        body=_binary(body).decode("utf-8"),
        since=entity["since"],
        version=str(entity.metadata["etag"]),
        request_hash=entity.get("request_hash", ""),
    )


def _binary(value: Any) -> bytes:
    """A binary property as read back (the SDK may wrap it as an EntityProperty)."""
    return bytes(value.value if hasattr(value, "value") else value)


def _inline(doc: str) -> dict[str, Any] | None:
    """The document as the entity's properties: one string property while it fits one, else binary parts of its
    UTF-8; None when it does not fit the entity."""
    if len(doc.encode("utf-16-le")) <= INLINE_DOC_MAX_BYTES:
        return {"doc": doc}
    data = doc.encode("utf-8")
    if len(data) > DOC_PART_BYTES * DOC_MAX_PARTS:
        return None
    parts = [data[i : i + DOC_PART_BYTES] for i in range(0, len(data), DOC_PART_BYTES)]
    return {"doc_parts": len(parts)} | {f"doc_{i}": part for i, part in enumerate(parts)}
