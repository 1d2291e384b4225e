"""No job without a message (SQLite, and Azure on Azurite): a process killed between storing a job and queueing
its message leaves the message kept unsent; the timer function sends it once the bound passes, from any number of
instances at once, and a repeat of the request (same Idempotency-Key) sends it at once. The kill is injected at
the queue port: its `send` never returns. On SQLite a job with its payload inline is written with its message in
one transaction (no such kill can leave one without the other): the `sqlite` rows run the store-then-send path
that SQLite takes for a claim-checked payload; the one-transaction path has tests of its own at the end."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from functions.azure.indexing import bindings, trigger
from functions.local.runtime import QueuePump
from shared.adapters.azure.jobs import AzureJobStore
from shared.adapters.azure.queue import AzureJobQueue
from shared.adapters.sqlite.queue import SqliteJobQueue
from shared.bootstrap import Inferq, bootstrap, set_app
from shared.domain.auth import Caller
from shared.domain.jobs import Job, JobStatus, new_job_id, utcnow
from shared.domain.ports import JobQueue
from shared.settings import Settings
from tests.azurite import Azurite
from tests.conftest import wait_for

ACME = Caller("acme")
BOUND_S = 0.3


class Killed(BaseException):
    """The process died here: nothing after this line of the request ran (no `except Exception` sees it)."""


class DyingQueue:
    """The job queue of a process that is killed as it sends its next `deaths` messages."""

    def __init__(self, queue: JobQueue, deaths: int = 1) -> None:
        self.queue, self.deaths = queue, deaths
        self.name = queue.name

    def send(self, body: str, delay_s: float = 0) -> None:
        if self.deaths > 0:
            self.deaths -= 1
            raise Killed
        self.queue.send(body, delay_s)

    def __getattr__(self, name: str) -> object:
        return getattr(self.queue, name)


@pytest.fixture(params=["sqlite", "azure"])
def service(request: pytest.FixtureRequest, tmp_path: Path, config_path: Path) -> Iterator[Inferq]:
    azure = {}
    if request.param == "azure":
        azurite: Azurite = request.getfixturevalue("azurite")
        azure = {"backend": "azure", "AzureWebJobsStorage": azurite.fresh_connection_string()}
    settings = Settings(
        _env_file=None, data_dir=tmp_path / "data", config=config_path, resend_unsent_after_s=BOUND_S, **azure
    )
    svc = bootstrap(settings)
    svc.dispatcher.create_queued = None  # the store-then-send path, on SQLite too (see the module's docstring)
    set_app(svc)
    yield svc
    set_app(None)


def queued(service: Inferq) -> int:
    queue = service.queue
    assert isinstance(queue, SqliteJobQueue | AzureJobQueue)
    return queue.count()


def killed_while_sending(service: Inferq, key: str, text: str = "lost between store and queue") -> Job:
    """A request whose process died after the job was stored, before its message was on the queue."""
    real = service.dispatcher.queue
    service.dispatcher.queue = DyingQueue(real)
    try:
        with pytest.raises(Killed):
            service.gateway.submit(ACME, service.config.default_deployment, {"input": text}, key)
    finally:
        service.dispatcher.queue = real
    job = service.store.get(new_job_id(ACME.tenant, key))
    assert job is not None
    return job


def run_to_the_end(service: Inferq, job_id: str) -> Job:
    pump = QueuePump(
        service.queue, trigger("run_job"), poison=service.poison, max_dequeue_count=5,
        visibility_timeout_s=60, concurrency=2,
    )  # fmt: skip
    try:

        def done() -> bool:
            pump.pump_once()
            job = service.store.get(job_id)
            return job is not None and job.status.terminal

        wait_for(done, timeout=60)
    finally:
        pump.shutdown()
    job = service.store.get(job_id)
    assert job is not None
    return job


def test_the_timer_sends_a_message_left_unsent_once_the_bound_passes(service: Inferq) -> None:
    job = killed_while_sending(service, "kill-1")
    assert job.status is JobStatus.QUEUED and queued(service) == 0  # stuck forever, before the fix
    assert service.dispatcher.resend_unsent() == 0  # kept just now: its sender may still be at it
    sweep = trigger("resend_unsent_jobs")  # what Azure's timer (and the local host's loop) calls
    wait_for(lambda: sweep(None) or queued(service) == 1, timeout=30)
    assert service.store.unsent(job.id) is None
    done = run_to_the_end(service, job.id)
    assert done.status is JobStatus.SUCCEEDED and done.usage and done.usage_published
    sweep(None)
    assert queued(service) == 0  # sent once


def test_a_repeat_with_the_same_idempotency_key_sends_it_at_once(service: Inferq) -> None:
    job = killed_while_sending(service, "kill-2", "repeat me")
    deployment = service.config.default_deployment
    again = service.gateway.submit(ACME, deployment, {"input": "repeat me"}, "kill-2")
    assert (again.created, again.job.id, queued(service)) == (False, job.id, 1)
    service.gateway.submit(ACME, deployment, {"input": "repeat me"}, "kill-2")
    assert queued(service) == 1  # its message is out: a further repeat sends nothing
    assert run_to_the_end(service, job.id).status is JobStatus.SUCCEEDED
    assert service.dispatcher.resend_unsent() == 0


def test_many_timers_at_once_send_each_message_once(service: Inferq) -> None:
    jobs = [killed_while_sending(service, f"kill-many-{i}", f"text {i}") for i in range(3)]
    # Every copy past the bound, so each timer below finds all three.
    wait_for(lambda: len(service.store.unsent_before(utcnow() - timedelta(seconds=BOUND_S), 10)) == len(jobs))
    sent: list[int] = []
    timers = [threading.Thread(target=lambda: sent.append(service.dispatcher.resend_unsent())) for _ in range(4)]
    for t in timers:
        t.start()
    for t in timers:
        t.join()
    assert sum(sent) == 3 and queued(service) == 3


def test_a_job_queued_normally_keeps_no_copy(service: Inferq) -> None:
    submitted = service.gateway.submit(ACME, service.config.default_deployment, {"input": "plain"}, "plain")
    assert queued(service) == 1 and service.store.unsent(submitted.job.id) is None


def test_the_timer_is_indexed() -> None:
    (timer,) = bindings("resend_unsent_jobs")
    assert timer["type"] == "timerTrigger" and timer["schedule"] == "30 */1 * * * *"


@pytest.mark.parametrize("service", ["azure"], indirect=True)
def test_a_copy_left_by_a_repeat_for_another_request_is_dropped_unsent(service: Inferq) -> None:
    """On Table storage a repeat inserts its copy before it learns the id is taken, then deletes it; killed in
    between, it leaves a copy naming its own request: the timer must not send that as the job's message. (SQLite
    keeps a job and its copy in one transaction: no such copy can be left there.)"""
    first = service.gateway.submit(ACME, service.config.default_deployment, {"input": "first"}, "reused").job
    assert queued(service) == 1
    store = service.store
    assert isinstance(store, AzureJobStore)
    other = Job.new(first.id, first.tenant, first.deployment, request_hash="another request")
    store.table.create_entity(store._unsent_entity(other, '{"v":1,"job_id":"wrong"}'))
    assert store.unsent(first.id) is not None
    wait_for(lambda: service.dispatcher.resend_unsent() == 0 and service.store.unsent(first.id) is None)
    assert queued(service) == 1  # only the job's own message


@pytest.fixture
def embedded(tmp_path: Path, config_path: Path) -> Iterator[Inferq]:
    svc = bootstrap(Settings(_env_file=None, data_dir=tmp_path / "data", config=config_path))
    set_app(svc)
    yield svc
    set_app(None)


def commits_while(service: Inferq, step: Callable[[], object]) -> int:
    """COMMITs this thread's connection to the embedded database ran during `step`."""
    assert isinstance(service.queue, SqliteJobQueue)
    conn = service.queue.db.connection()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        step()
    finally:
        conn.set_trace_callback(None)
    return sum(s.strip().upper() == "COMMIT" for s in statements)


def test_on_sqlite_a_job_and_its_message_are_one_commit_and_keep_no_copy(embedded: Inferq) -> None:
    deployment = embedded.config.default_deployment
    submitted: list[Job] = []
    commits = commits_while(
        embedded, lambda: submitted.append(embedded.gateway.submit(ACME, deployment, {"input": "x"}).job)
    )
    (job,) = submitted
    assert commits == 1  # job, message: no unsent copy written and then dropped
    assert queued(embedded) == 1 and embedded.store.unsent(job.id) is None
    assert embedded.queue_sent.is_set()  # the local host's pump is woken at once
    assert run_to_the_end(embedded, job.id).status is JobStatus.SUCCEEDED


def test_on_sqlite_a_kill_inside_the_one_commit_leaves_neither_job_nor_message(embedded: Inferq) -> None:
    queue = embedded.queue
    assert isinstance(queue, SqliteJobQueue)
    deployment = embedded.config.default_deployment

    def dying_insert(*_: object) -> None:
        raise Killed

    queue.insert = dying_insert  # type: ignore[method-assign]
    try:
        with pytest.raises(Killed):
            embedded.gateway.submit(ACME, deployment, {"input": "all or nothing"}, "kill-atomic")
    finally:
        del queue.insert
    job_id = new_job_id(ACME.tenant, "kill-atomic")
    assert embedded.store.get(job_id) is None and queued(embedded) == 0
    again = embedded.gateway.submit(ACME, deployment, {"input": "all or nothing"}, "kill-atomic")  # the retry
    assert again.created and again.job.id == job_id and queued(embedded) == 1
    assert run_to_the_end(embedded, job_id).status is JobStatus.SUCCEEDED


def test_on_sqlite_a_claim_checked_payload_still_goes_by_the_unsent_copy(embedded: Inferq) -> None:
    """Its payload is a blob written before the message: the store-then-send path, with its copy until sent."""
    deployment = embedded.config.default_deployment
    big = {"input": ["word " * 1000] * 12}  # past inline_payload_max_bytes
    submitted: list[Job] = []
    commits = commits_while(embedded, lambda: submitted.append(embedded.gateway.submit(ACME, deployment, big).job))
    (job,) = submitted
    assert job.payload_ref is not None and commits == 3  # job + copy, message, copy dropped
    assert queued(embedded) == 1 and embedded.store.unsent(job.id) is None
