"""Getting a job's message onto the queue, and never losing it on the way: the job is stored with its message
kept unsent, the message is sent, then the copy is dropped. A kill between the steps leaves the copy, which a
timer (`resend_unsent`) or the request's repeat (`resend`) sends again. Where the store can write the job and its
message in one transaction (the embedded queue, a table of the store's own file), that one step does it all."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from shared.domain.errors import TransientError
from shared.domain.jobs import Job, JobStatus, utcnow
from shared.domain.ports import BlobStore, JobQueue, JobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    """A job's queue message, and its payload when the message carries only a reference to it (claim-check)."""

    message: str
    payload_ref: str | None = None
    payload: bytes = b""


class Dispatcher:
    def __init__(
        self,
        *,
        store: JobStore,
        queue: JobQueue,
        blobs: BlobStore,
        resend_after_s: float,
        enqueued: Callable[[], None] = lambda: None,
        create_queued: Callable[[Job, str], Job] | None = None,
    ) -> None:
        self.store = store
        self.queue = queue
        self.blobs = blobs
        self.resend_after_s = resend_after_s  # how long a send may take before its copy is sent again
        self._enqueued = enqueued
        self.create_queued = create_queued  # the job and its message in one transaction, where the store can

    def dispatch(self, job: Job, outgoing: Outgoing) -> Job:
        """Store the job and queue its message; Conflict when the id exists (a repeat: see `resend`)."""
        if self.create_queued is not None and outgoing.payload_ref is None:
            job = self.create_queued(job, outgoing.message)
            self._enqueued()
            return job
        job = self.store.create(job, outgoing.message)
        self._send(job.id, outgoing)
        return job

    def resend(self, job: Job, outgoing: Outgoing) -> bool:
        """A repeat of `job`'s request (same tenant, key and request): if the job's message was never known to be
        sent (the process that stored it died first), send it now. True if sent."""
        if job.status is not JobStatus.QUEUED:
            return False
        unsent = self.store.unsent(job.id)
        if unsent is None or not self.store.claim(unsent):  # sent, or another sender has it
            return False
        log.warning("job %s: its message was never sent; sending it for the repeat", job.id)
        self._send(job.id, outgoing)
        return True

    def resend_unsent(self, limit: int = 100) -> int:
        """Send the messages kept unsent for longer than `resend_after_s` (a timer calls this, on any number of
        instances: each message is claimed before it is sent, so one of them sends it). Returns how many."""
        resent = 0
        for unsent in self.store.unsent_before(utcnow() - timedelta(seconds=self.resend_after_s), limit):
            if not self.store.claim(unsent):
                continue
            job = self.store.get(unsent.job_id)
            # A job that moved on had its message delivered; a copy kept by a repeat that found another request
            # under its id, or by a create that never happened, is not any job's message.
            if job is not None and job.status is JobStatus.QUEUED and job.request_hash == unsent.request_hash:
                log.warning("job %s: message unsent after %.0f s; sending it", job.id, self.resend_after_s)
                self.queue.send(unsent.body)
                self._enqueued()
                resent += 1
            self.store.sent(unsent.job_id)
        return resent

    def _send(self, job_id: str, outgoing: Outgoing) -> None:
        if outgoing.payload_ref:
            self.blobs.put(outgoing.payload_ref, outgoing.payload)
        self.queue.send(outgoing.message)
        self._enqueued()
        try:
            self.store.sent(job_id)
        except TransientError as exc:  # the message is out: at worst it is sent once more, and runs once
            log.warning("job %s: sent, but its unsent copy stays for the timer to drop: %s", job_id, exc)
