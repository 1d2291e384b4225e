"""JobStore contract (fake, SQLite and Azure Table storage): create once, ETag-conditional replace, terminal states
never overwritten, large results, and the jobs whose usage is still unpublished."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.errors import ConcurrencyConflict, Conflict
from shared.domain.jobs import Job, JobError, JobStatus
from shared.domain.ports import JobStore
from shared.schemas.usage import Meter, usage_event


def new_job(job_id: str = "job_contract", tenant: str = "acme") -> Job:
    return Job.new(job_id, tenant, "all-MiniLM-L6-v2", request_hash="h")


def big_result(n_vectors: int = 40) -> dict:
    return {"object": "list", "data": [{"index": i, "embedding": [0.123456789 + i] * 384} for i in range(n_vectors)]}


def test_create_then_get_round_trips_and_a_second_create_conflicts(store: JobStore) -> None:
    created = store.create(new_job())
    assert created.etag
    fetched = store.get("job_contract")
    assert fetched is not None and fetched == created
    with pytest.raises(Conflict):
        store.create(new_job())
    assert store.get("job_missing") is None


def test_replace_needs_the_current_etag(store: JobStore) -> None:
    created = store.create(new_job())
    running = store.replace(created.to(JobStatus.RUNNING, attempts=1))
    assert running.etag and running.etag != created.etag
    with pytest.raises(ConcurrencyConflict):
        store.replace(created.to(JobStatus.CANCELLED))  # stale: written against the queued version
    fetched = store.get(created.id)
    assert fetched is not None and (fetched.status, fetched.attempts) == (JobStatus.RUNNING, 1)
    with pytest.raises(ConcurrencyConflict):
        store.replace(created.model_copy(update={"etag": None}))


def test_a_terminal_state_is_never_overwritten_by_a_racing_writer(store: JobStore) -> None:
    running = store.replace(store.create(new_job()).to(JobStatus.RUNNING))
    reader_a, reader_b = store.get(running.id), store.get(running.id)
    assert reader_a is not None and reader_b is not None
    store.replace(reader_a.to(JobStatus.SUCCEEDED, result={"ok": True}))
    with pytest.raises(ConcurrencyConflict):
        store.replace(reader_b.to(JobStatus.FAILED))  # lost the race: its etag is stale
    final = store.get(running.id)
    assert final is not None and final.status is JobStatus.SUCCEEDED and final.result == {"ok": True}
    with pytest.raises(Conflict):
        final.to(JobStatus.FAILED)  # and the domain refuses to leave a terminal state at all


def test_a_large_result_round_trips_and_survives_a_later_write(store: JobStore) -> None:
    result = big_result()  # ~300 KB: over a Table property (64 KiB), stored by reference on Azure
    running = store.replace(store.create(new_job()).to(JobStatus.RUNNING))
    done = store.replace(running.to(JobStatus.SUCCEEDED, result=result, usage_published=False))
    fetched = store.get(done.id)
    assert fetched is not None and fetched.result == result
    published = store.replace(fetched.published())
    again = store.get(done.id)
    assert again is not None and again.result == result and again.usage_published and again.etag == published.etag


def test_unpublished_usage_lists_only_jobs_with_usage_to_publish(store: JobStore) -> None:
    event = usage_event(
        job_id="job_u1", tenant="acme", endpoint="d", deployment="d", model="m", meter=Meter.INPUT_TOKENS,
        tokens=7, time=datetime(2024, 5, 1, 10, 30, tzinfo=UTC),
    )  # fmt: skip
    u1 = store.replace(store.create(new_job("job_u1")).to(JobStatus.RUNNING))
    u1 = store.replace(u1.to(JobStatus.SUCCEEDED, usage=(event,), usage_published=False))
    store.replace(store.create(new_job("job_u2")).to(JobStatus.RUNNING))
    (pending,) = store.unpublished_usage(10)
    assert pending.id == "job_u1" and pending.usage == (event,) and pending.etag == u1.etag
    store.replace(pending.published())
    assert store.unpublished_usage(10) == []


def test_ids_a_direct_producer_may_send_are_stored_faithfully(store: JobStore) -> None:
    odd = "job/with#odd?chars\\and spaces ✓"
    created = store.create(new_job(odd))
    fetched = store.get(odd)
    assert fetched is not None and fetched.id == odd and fetched.etag == created.etag
    assert store.get("job/with#odd?chars") is None


def test_a_failed_job_with_a_long_error_round_trips(store: JobStore) -> None:
    # A scoring script's run() may raise with any message (one that echoes its input, say): the job must still
    # reach its terminal state, with the reason kept, whatever the size (a Table property holds 64 KiB).
    message = "ValueError: " + "bad row; " * 20_000  # ~180 KB
    running = store.replace(store.create(new_job()).to(JobStatus.RUNNING))
    failed = store.replace(running.to(JobStatus.FAILED, error=JobError(code="ScriptError", message=message)))
    fetched = store.get(failed.id)
    assert fetched is not None and fetched == failed
    assert fetched.status is JobStatus.FAILED and fetched.error is not None and fetched.error.message == message
    published = store.replace(fetched.published())
    again = store.get(failed.id)
    assert again is not None and again.error == failed.error and again.etag == published.etag


def billed(job: Job, tokens: int = 7) -> Job:
    """`job` finished with usage still to publish, as the worker leaves it when the stream is down."""
    event = usage_event(
        job_id=job.id, tenant=job.tenant, endpoint="d", deployment="d", model="m", meter=Meter.INPUT_TOKENS,
        tokens=tokens, time=datetime(2024, 5, 1, 10, 30, tzinfo=UTC),
    )  # fmt: skip
    return job.to(JobStatus.SUCCEEDED, usage=(event,), usage_published=False)


def test_exactly_the_jobs_with_unpublished_usage_come_back_up_to_the_limit(store: JobStore) -> None:
    # Ids a producer may send, including ones an adapter could confuse with its own keys.
    ids = [f"job_many{i:02d}" for i in range(24)] + ["~outbox", "job/odd#id?", "~" + "0" * 64]
    unpublished = set()
    for i, job_id in enumerate(ids):
        running = store.replace(store.create(new_job(job_id)).to(JobStatus.RUNNING))
        if i % 3 == 0:
            store.replace(billed(running))
            unpublished.add(job_id)
        else:
            store.replace(running.to(JobStatus.SUCCEEDED, result={"ok": True}))
    assert {j.id for j in store.unpublished_usage(100)} == unpublished
    some = store.unpublished_usage(4)
    assert len(some) == 4 and len({j.id for j in some}) == 4 and {j.id for j in some} <= unpublished
    assert all(not j.usage_published and j.usage for j in some)
    assert store.unpublished_usage(0) == []


def test_a_job_published_then_stored_again_never_reappears(store: JobStore) -> None:
    done = store.replace(billed(store.replace(store.create(new_job()).to(JobStatus.RUNNING))))
    (pending,) = store.unpublished_usage(10)
    published = store.replace(pending.published())
    store.replace(published.model_copy(update={"last_error": "a later write"}))
    assert store.unpublished_usage(10) == []
    fetched = store.get(done.id)
    assert fetched is not None and fetched.usage_published and fetched.usage == done.usage


def test_a_write_of_unpublished_usage_that_loses_its_race_leaves_nothing_to_publish(store: JobStore) -> None:
    created = store.create(new_job())
    store.replace(created.to(JobStatus.RUNNING))
    with pytest.raises(ConcurrencyConflict):
        store.replace(billed(created.to(JobStatus.RUNNING)))  # stale etag: never written
    assert store.unpublished_usage(10) == []
    current = store.get(created.id)  # read again, as every writer does after a conflict
    assert current is not None and current.usage_published
    store.replace(billed(current))
    assert [j.id for j in store.unpublished_usage(10)] == [created.id]


def test_get_many_returns_the_jobs_that_exist_across_query_chunks(store: JobStore) -> None:
    ids = [f"job_many{i:02d}" for i in range(40)]
    for job_id in ids[:33]:
        store.create(new_job(job_id))
    running = store.replace(store.create(new_job("job_manyrun")).to(JobStatus.RUNNING))
    found = store.get_many([*ids, running.id])  # 7 of these never existed
    assert sorted(j.id for j in found) == sorted([*ids[:33], running.id])
    assert next(j for j in found if j.id == running.id).status is JobStatus.RUNNING
    assert all(j.etag for j in found)  # writable as read
    assert store.get_many([]) == []


def later(seconds: float = 3600) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_a_job_created_with_its_message_keeps_it_unsent_until_sent(store: JobStore) -> None:
    store.create(new_job("job_plain"))  # no message: nothing kept
    store.create(new_job("job_unsent"), '{"v":1,"job_id":"job_unsent","payload":{"input":"é"}}')
    unsent = store.unsent("job_unsent")
    assert unsent is not None
    assert (unsent.job_id, unsent.body, unsent.request_hash) == (
        "job_unsent",
        '{"v":1,"job_id":"job_unsent","payload":{"input":"é"}}',
        "h",
    )
    assert store.unsent("job_plain") is None
    assert [m.job_id for m in store.unsent_before(later(), 10)] == ["job_unsent"]
    assert store.unsent_before(datetime.now(UTC) - timedelta(hours=1), 10) == []  # kept just now: not yet due
    store.sent("job_unsent")
    store.sent("job_unsent")  # twice is no error
    assert store.unsent("job_unsent") is None
    assert store.unsent_before(later(), 10) == []


def test_a_large_message_is_kept_whole(store: JobStore) -> None:
    body = '{"payload":"' + "ü" * 24_000 + '"}'  # 48 KB of UTF-8, as a queue message may carry
    store.create(new_job("job_large"), body)
    unsent = store.unsent("job_large")
    assert unsent is not None and unsent.body == body


def test_a_repeat_of_an_existing_id_leaves_the_first_message_as_it_was(store: JobStore) -> None:
    store.create(new_job("job_first"), "first")
    repeat = Job.new("job_first", "acme", "all-MiniLM-L6-v2", request_hash="other")
    with pytest.raises(Conflict):
        store.create(repeat, "second")
    unsent = store.unsent("job_first")
    assert unsent is not None and (unsent.body, unsent.request_hash) == ("first", "h")
    store.sent("job_first")
    with pytest.raises(Conflict):
        store.create(repeat, "third")
    assert store.unsent("job_first") is None  # a sent job's message is not brought back by a repeat


def test_one_claimer_wins_and_a_claim_postpones_the_message(store: JobStore) -> None:
    store.create(new_job("job_claimed"), "m")
    (seen,) = store.unsent_before(later(), 10)
    again = store.unsent("job_claimed")
    assert again is not None and again.version == seen.version
    assert store.claim(seen) is True
    assert store.claim(again) is False  # a second sender read the same version: it loses
    assert store.claim(seen) is False
    claimed = store.unsent("job_claimed")
    assert claimed is not None and claimed.since >= seen.since and claimed.version != seen.version
    assert store.unsent_before(claimed.since, 10) == []  # hidden from senders until the bound passes again
    store.sent("job_claimed")
    assert store.claim(claimed) is False  # sent meanwhile


def test_unsent_before_honours_the_limit(store: JobStore) -> None:
    for i in range(5):
        store.create(new_job(f"job_u{i}"), f"m{i}")
    assert len(store.unsent_before(later(), 3)) == 3
    assert {m.job_id for m in store.unsent_before(later(), 10)} == {f"job_u{i}" for i in range(5)}
    assert store.unsent_before(later(), 0) == []
