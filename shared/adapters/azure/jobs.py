"""The job store on Table storage: one entity per job, written only if its ETag is unchanged.

A Table property holds at most 64 KiB and an entity 1 MiB, so a large result (embeddings of many inputs) is kept
in Blob storage under a content-addressed key and the entity refers to it; so is the rest of a document still too
large without its result (a failed job with a very long error message).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from itertools import islice
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.data.tables import UpdateMode

from shared.adapters.azure.blobs import AzureBlobStore
from shared.adapters.azure.connection import CreateOnce
from shared.adapters.azure.errors import translated
from shared.adapters.azure.tables import table_key
from shared.errors import ConcurrencyConflict, NotFound
from shared.jobs import Job

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableEntity

ROW = "job"
INLINE_DOC_MAX_BYTES = 60 * 1024  # UTF-16, as the service counts a string property (limit 64 KiB)
RESULTS_PREFIX = "results"


class AzureJobStore:
    def __init__(self, table: TableClient, blobs: AzureBlobStore) -> None:
        self.table = table
        self.blobs = blobs
        self._create = CreateOnce(f"table {table.table_name}", table.create_table)
        self._written: OrderedDict[str, None] = OrderedDict()  # result blobs this process knows exist
        self._lock = threading.Lock()

    def create(self, job: Job) -> Job:
        entity = self._entity(job)
        self._create()
        with translated(f"job {job.id}"):
            metadata = self.table.create_entity(entity)
        return job.model_copy(update={"etag": metadata["etag"]})

    def get(self, job_id: str) -> Job | None:
        self._create()
        try:
            with translated(f"job {job_id}"):
                entity = self.table.get_entity(table_key(job_id), ROW)
        except NotFound:
            return None
        return self._job(entity)

    def replace(self, job: Job) -> Job:
        if job.etag is None:
            raise ConcurrencyConflict(f"job {job.id} has no etag: read it before writing it")
        entity = self._entity(job)
        self._create()
        try:
            with translated(f"job {job.id}"):
                metadata = self.table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=job.etag, match_condition=MatchConditions.IfNotModified
                )
        except NotFound as exc:
            raise ConcurrencyConflict(f"job {job.id} no longer exists") from exc
        return job.model_copy(update={"etag": metadata["etag"]})

    def unpublished_usage(self, limit: int) -> list[Job]:
        if limit <= 0:
            return []
        self._create()
        with translated("jobs with unpublished usage"):
            entities = self.table.query_entities("usage_published eq false", results_per_page=min(limit, 1000))
            found = list(islice(entities, limit))
        return [self._job(e) for e in found]

    def _entity(self, job: Job) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": table_key(job.id),
            "RowKey": ROW,
            "tenant": job.tenant,
            "status": job.status.value,
            "usage_published": job.usage_published,
        }
        doc = job.model_dump_json(exclude={"etag"})
        if _too_large(doc) and job.result is not None:
            entity["result_ref"] = self._put_blob(job.id, json.dumps(job.result, separators=(",", ":")))
            doc = job.model_copy(update={"result": None}).model_dump_json(exclude={"etag"})
        if _too_large(doc):  # still: an error message of any length (a scoring script's exception, say)
            entity["doc_ref"] = self._put_blob(job.id, doc)
            doc = ""
        entity["doc"] = doc
        return entity

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
        doc_ref = entity.get("doc_ref")
        job = Job.model_validate_json(self.blobs.get(doc_ref) if doc_ref else entity["doc"])
        ref = entity.get("result_ref")
        if ref:
            job = job.model_copy(update={"result": json.loads(self.blobs.get(ref))})
        return job.model_copy(update={"etag": entity.metadata["etag"]})


def _too_large(doc: str) -> bool:
    return len(doc.encode("utf-16-le")) > INLINE_DOC_MAX_BYTES
