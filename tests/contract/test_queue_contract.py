"""JobQueue contract (fake, SQLite and Azure Storage Queue): visibility timeout, dequeue count, pop receipts,
release, and poison after five failed deliveries through the local runtime's pump."""

from __future__ import annotations

import threading
import time

import azure.functions as func

from functions.local.runtime import QueuePump
from shared.domain.ports import JobQueue, ReceivedMessage
from tests.conftest import wait_for
from tests.contract.conftest import Queues


def receive_one(queue: JobQueue, visibility_timeout_s: float, timeout: float = 15) -> ReceivedMessage:
    """Poll until a message is visible (Azure counts visibility in whole seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = queue.receive(1, visibility_timeout_s)
        if got:
            return got[0]
        time.sleep(0.05)
    raise AssertionError(f"no message became visible within {timeout}s")


def test_a_received_message_is_invisible_until_its_visibility_timeout_passes(queues: Queues) -> None:
    q = queues.queue
    q.send('{"n": 1}')
    first = receive_one(q, visibility_timeout_s=3)
    assert (first.body, first.dequeue_count) == ('{"n": 1}', 1)
    assert q.receive(10, 3) == []  # held by the first receiver
    second = receive_one(q, visibility_timeout_s=30)  # visible again once the timeout passed: a redelivery
    assert (second.id, second.body, second.dequeue_count) == (first.id, first.body, 2)
    assert second.receipt != first.receipt


def test_a_delayed_message_stays_invisible_for_its_delay(queues: Queues) -> None:
    q = queues.queue
    q.send('{"later": 1}', delay_s=2)
    q.send('{"now": 1}')
    assert [m.body for m in q.receive(10, 30)] == ['{"now": 1}']  # the delayed one is not there yet
    later = receive_one(q, visibility_timeout_s=30)
    assert (later.body, later.dequeue_count) == ('{"later": 1}', 1)


def test_a_stale_receipt_neither_deletes_nor_releases(queues: Queues) -> None:
    q = queues.queue
    q.send("m")
    first = receive_one(q, visibility_timeout_s=1)
    second = receive_one(q, visibility_timeout_s=30)  # someone else holds it now
    q.delete(first)  # the first receiver finishing late must not delete the second's message
    q.release(first)
    assert q.receive(10, 30) == [] and queues.count(q) == 1
    q.delete(second)
    assert queues.count(q) == 0


def test_release_makes_the_message_visible_at_once_with_its_dequeue_count(queues: Queues) -> None:
    q = queues.queue
    q.send("retry me")
    first = receive_one(q, visibility_timeout_s=300)
    q.release(first)
    again = receive_one(q, visibility_timeout_s=300, timeout=5)
    assert (again.body, again.dequeue_count) == ("retry me", 2)


def test_each_message_is_delivered_to_one_receiver(queues: Queues) -> None:
    q = queues.queue
    bodies = {f"body-{i}" for i in range(12)}
    for body in sorted(bodies):
        q.send(body)
    seen: list[str] = []
    deadline = time.monotonic() + 15
    while len(seen) < len(bodies) and time.monotonic() < deadline:
        for m in q.receive(5, 300):
            seen.append(m.body)
            q.delete(m)
    assert sorted(seen) == sorted(bodies)
    assert queues.count(q) == 0


def test_unicode_bodies_round_trip(queues: Queues) -> None:
    body = '{"input": "naïve café — 東京 🚀"}'
    queues.queue.send(body)
    assert receive_one(queues.queue, 30).body == body


def test_a_message_whose_handler_always_fails_is_poisoned_after_five_deliveries(queues: Queues) -> None:
    calls: list[int] = []
    lock = threading.Lock()

    def always_fails(msg: func.QueueMessage) -> None:
        with lock:
            calls.append(msg.dequeue_count or 0)
        raise RuntimeError("boom")

    pump = QueuePump(
        queues.queue, always_fails, poison=queues.poison, max_dequeue_count=5, visibility_timeout_s=30, concurrency=2
    )
    queues.queue.send('{"job_id": "job_poison"}')
    try:
        wait_for(lambda: pump.pump_once() >= 0 and queues.count(queues.poison) == 1, timeout=30)
    finally:
        pump.shutdown()
    assert sorted(calls) == [1, 2, 3, 4, 5]  # five deliveries, then moved (failures are released at once)
    assert queues.count(queues.queue) == 0
    assert receive_one(queues.poison, 30).body == '{"job_id": "job_poison"}'


def test_renew_keeps_a_held_message_invisible_and_moves_its_receipt(queues: Queues) -> None:
    q = queues.queue
    q.send("long job")
    first = receive_one(q, visibility_timeout_s=2)
    renewed = q.renew(first, 30)
    assert renewed is not None and renewed.receipt != first.receipt
    deadline = time.monotonic() + 4  # past the first timeout: without the renewal it would be visible again
    while time.monotonic() < deadline:
        assert q.receive(1, 30) == []
        time.sleep(0.2)
    q.delete(first)  # the old receipt no longer owns it
    assert queues.count(q) == 1
    q.delete(renewed)
    assert queues.count(q) == 0


def test_renew_by_a_receiver_that_lost_the_message_is_none(queues: Queues) -> None:
    q = queues.queue
    q.send("m")
    first = receive_one(q, visibility_timeout_s=1)
    second = receive_one(q, visibility_timeout_s=30)
    assert q.renew(first, 30) is None
    q.delete(second)


def test_the_pump_renews_a_message_while_its_job_runs_longer_than_the_timeout(queues: Queues) -> None:
    q = queues.queue
    q.send("slow")
    release = threading.Event()
    calls: list[int] = []

    def slow_handler(msg: func.QueueMessage) -> None:
        calls.append(msg.dequeue_count or 0)
        release.wait(20)

    pump = QueuePump(q, slow_handler, poison=None, max_dequeue_count=5, visibility_timeout_s=2, concurrency=2)
    wait_for(lambda: pump.pump_once() == 1 or bool(calls), timeout=15)
    deadline = time.monotonic() + 5  # over twice the visibility timeout, pumping as the local host does
    while time.monotonic() < deadline:
        pump.pump_once()
        time.sleep(0.1)
    assert calls == [1]  # never delivered a second time while it ran
    release.set()
    pump.shutdown()
    wait_for(lambda: queues.count(q) == 0, timeout=15)
