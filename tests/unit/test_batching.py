import random
import threading
import time
from collections.abc import Sequence

import pytest

from shared.runtimes.batching import MicroBatcher, runs

OVERHEAD = 6


def test_concurrent_calls_are_merged_and_answered_in_order() -> None:
    calls: list[list[int]] = []
    gate = threading.Event()

    def predict(items: Sequence[int]) -> list[int]:
        gate.wait(5)  # hold the first batch so the others queue up behind it
        calls.append(list(items))
        return [x * 10 for x in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(predict, max_batch_size=64, max_wait_s=0.05)
    results: dict[int, list[int]] = {}

    def call(i: int) -> None:
        results[i] = batcher([i, i + 100])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    assert results == {i: [i * 10, (i + 100) * 10] for i in range(8)}
    assert len(calls) < 8  # some calls shared a run
    assert sorted(x for c in calls for x in c) == sorted([*range(8), *range(100, 108)])


def test_a_failing_request_does_not_fail_its_neighbours() -> None:
    def predict(items: Sequence[str]) -> list[str]:
        if "bad" in items:
            raise ValueError("bad input")
        return [s.upper() for s in items]

    batcher: MicroBatcher[str, str] = MicroBatcher(predict, max_batch_size=8, max_wait_s=0.01)
    assert batcher(["a", "b"]) == ["A", "B"]
    with pytest.raises(ValueError, match="bad input"):
        batcher(["bad"])
    assert batcher(["c"]) == ["C"]


def test_what_waits_while_the_engine_is_busy_is_the_next_batch_with_no_wait_for_more() -> None:
    calls: list[list[int]] = []
    busy, gate = threading.Event(), threading.Event()

    def predict(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        busy.set()
        gate.wait(5)
        return list(items)

    batcher: MicroBatcher[int, int] = MicroBatcher(predict, max_batch_size=32, max_wait_s=0)
    first = threading.Thread(target=batcher, args=([0],))
    first.start()
    assert busy.wait(5)  # a lone request ran at once, in a batch of its own
    others = [threading.Thread(target=batcher, args=([i],)) for i in range(1, 8)]
    for t in others:
        t.start()
    deadline = time.monotonic() + 5
    while batcher.waiting() < 7 and time.monotonic() < deadline:
        time.sleep(0.001)
    gate.set()
    for t in [first, *others]:
        t.join(5)
    assert calls[0] == [0] and sorted(calls[1]) == list(range(1, 8)) and len(calls) == 2


def test_a_big_request_runs_in_capped_batches_and_another_owner_is_served_in_the_next_one() -> None:
    calls: list[list[str]] = []
    started, gate = threading.Event(), threading.Event()

    def predict(items: Sequence[str]) -> list[str]:
        calls.append(list(items))
        started.set()
        gate.wait(5)  # the first batch runs until the small request is waiting
        return [s.upper() for s in items]

    batcher: MicroBatcher[str, str] = MicroBatcher(predict, max_batch_size=32, max_wait_s=0, cost=len, max_batch_cost=4)
    big = [f"b{i:02d}" for i in range(20)]  # 3 characters each: one item per batch under a cost cap of 4
    results: dict[str, list[str]] = {}
    first = threading.Thread(target=lambda: results.update(big=batcher(big, "tenant-a")))
    first.start()
    assert started.wait(5)
    small = threading.Thread(target=lambda: results.update(small=batcher(["s"], "tenant-b")))
    small.start()
    deadline = time.monotonic() + 5
    while batcher.waiting() < 20 and time.monotonic() < deadline:
        time.sleep(0.001)
    gate.set()
    for t in (first, small):
        t.join(5)
    assert results == {"big": [s.upper() for s in big], "small": ["S"]}
    assert calls[0] == ["b00"] and calls[1][0] == "s"  # capped at 4 characters; the other tenant went next
    assert all(sum(map(len, c)) <= 4 for c in calls)


def test_owners_take_turns_item_by_item() -> None:
    calls: list[list[str]] = []
    started, gate = threading.Event(), threading.Event()

    def predict(items: Sequence[str]) -> list[str]:
        calls.append(list(items))
        started.set()
        gate.wait(5)
        return list(items)

    batcher: MicroBatcher[str, str] = MicroBatcher(predict, max_batch_size=4, max_wait_s=0)
    threads = [threading.Thread(target=batcher, args=(["warm"], "x"))]
    threads[0].start()
    assert started.wait(5)  # the engine is busy; what follows queues up
    waiting = 0
    for owner, items in (("a", ["a1", "a2", "a3", "a4"]), ("b", ["b1", "b2"]), ("c", ["c1"])):
        threads.append(threading.Thread(target=batcher, args=(items, owner)))
        threads[-1].start()
        waiting += len(items)
        deadline = time.monotonic() + 5
        while batcher.waiting() < waiting and time.monotonic() < deadline:  # in this order
            time.sleep(0.001)
    gate.set()
    for t in threads:
        t.join(5)
    # the newest owner first (served least recently), then turns: c, b, a, b, a, then a's rest
    assert calls[1:] == [["c1", "b1", "a1", "b2"], ["a2", "a3", "a4"]]


def test_a_short_request_sharing_a_batch_with_long_ones_is_answered_after_its_own_run() -> None:
    calls: list[list[str]] = []
    answered: dict[str, list[str]] = {}
    started, gate = threading.Event(), threading.Event()

    def predict(items: Sequence[str]) -> list[str]:
        calls.append(list(items))
        started.set()
        gate.wait(5)
        if "long" * 20 in items:  # the short request is back with its caller before the long run ends
            deadline = time.monotonic() + 5
            while "short" not in answered and time.monotonic() < deadline:
                time.sleep(0.001)
            assert answered.get("short") == ["s"]
        return list(items)

    batcher: MicroBatcher[str, str] = MicroBatcher(predict, max_batch_size=8, max_wait_s=0, cost=len)
    threads = [threading.Thread(target=batcher, args=(["warm"], "x"))]
    threads[0].start()
    assert started.wait(5)
    threads.append(threading.Thread(target=lambda: answered.update(long=batcher(["long" * 20] * 2, "a"))))
    threads.append(threading.Thread(target=lambda: answered.update(short=batcher(["s"], "b"))))
    for t, waiting in zip(threads[1:], (2, 3), strict=True):
        t.start()
        deadline = time.monotonic() + 5
        while batcher.waiting() < waiting and time.monotonic() < deadline:
            time.sleep(0.001)
    gate.set()
    for t in threads:
        t.join(5)
    assert calls[1:] == [["s"], ["long" * 20] * 2]  # one batch, two runs: the short one first
    assert answered == {"short": ["s"], "long": ["long" * 20] * 2}


@pytest.mark.parametrize("seed", range(20))
def test_runs_are_cut_at_the_least_padded_cost(seed: int) -> None:
    rng = random.Random(seed)
    lengths = sorted(rng.randint(3, 60) for _ in range(rng.randint(1, 9)))
    max_rows = rng.randint(1, 6)

    def cost(cuts: list[slice]) -> int:
        return sum(OVERHEAD + len(lengths[c]) * lengths[c][-1] for c in cuts)

    def every_cutting(start: int) -> list[list[slice]]:  # brute force: all ways to cut lengths[start:]
        if start == len(lengths):
            return [[]]
        return [
            [slice(start, end), *rest]
            for end in range(start + 1, min(len(lengths), start + max_rows) + 1)
            for rest in every_cutting(end)
        ]

    found = runs(lengths, max_rows, OVERHEAD)
    assert [i for c in found for i in range(c.start, c.stop)] == list(range(len(lengths)))
    assert all(c.stop - c.start <= max_rows for c in found)
    assert cost(found) == min(cost(c) for c in every_cutting(0))


def test_beside_a_heavy_batch_another_owner_starts_at_once_and_the_same_owner_waits_its_turn() -> None:
    """Two workers share the engine's threads: a second batch of the big job's would only halve both, so it waits;
    another tenant's request starts at once beside it."""
    calls: list[list[str]] = []
    gate = threading.Event()

    def predict(items: Sequence[str]) -> list[str]:
        calls.append(list(items))
        if items[0].startswith("b"):
            gate.wait(5)  # the big job's batches run until released
        return [s.upper() for s in items]

    batcher: MicroBatcher[str, str] = MicroBatcher(
        predict, max_batch_size=32, max_wait_s=0, workers=2, cost=len, max_batch_cost=8
    )
    big = [f"b{i:03d}" for i in range(6)]  # 4 characters each: two a batch, a heavy one (the whole cost cap)
    results: dict[str, list[str]] = {}
    first = threading.Thread(target=lambda: results.update(big=batcher(big, "tenant-a")))
    first.start()
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.2)  # room for the second worker to start the big job's next batch, which it must not
    assert calls == [["b000", "b001"]] and batcher.waiting() == 4
    assert batcher(["s"], "tenant-b") == ["S"]  # answered while the big job's batch still runs
    assert not gate.is_set() and calls[-1] == ["s"]
    gate.set()
    first.join(5)
    assert results["big"] == [s.upper() for s in big]
    assert calls[2:] == [["b002", "b003"], ["b004", "b005"]]
