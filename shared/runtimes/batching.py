"""Micro-batching as a wrapper: concurrent `predict` calls for one deployment are merged into fair, bounded runs.

Runners never see it (MLServer's adaptive batching, in threads): callers block, `workers` threads run batches.
A batch is whatever is waiting when a worker is free (continuous batching): a lone request runs at once, and
requests that arrive while a batch runs form the next one. `max_wait_s` > 0 also holds a batch open that long
for more (fuller batches for a lighter load, at that much latency).

Fair sharing: a batch is filled item by item, round-robin over the owners (tenants) waiting, first come first
served among one owner's requests, and capped at `max_batch_size` items and `max_batch_cost` (the cost of an
item: its tokens). So a 2,048-input request runs as many small batches, and another tenant's request waits for
at most the batches already running, not for the big one to end. With several workers, a full batch (the cost cap
in flight) gets no second batch of its owners beside it, only other owners': another tenant's request beside a big
job starts at once instead of waiting for a worker.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

from opentelemetry.trace import SpanContext

from shared import telemetry

T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False)
class _Request(Generic[T, R]):
    items: Sequence[T]
    owner: str = ""
    future: Future[list[R]] = field(default_factory=Future)
    results: list[R | None] = field(default_factory=list)
    taken: int = 0  # items handed to batches so far
    left: int = 0  # items whose results are still missing
    caller: SpanContext | None = None  # the caller's span (tracing on): the batches that run its items link to it

    def __post_init__(self) -> None:
        self.results = [None] * len(self.items)
        self.left = len(self.items)


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        predict: Callable[[Sequence[T]], list[R]],
        max_batch_size: int,
        max_wait_s: float,
        workers: int = 1,
        cost: Callable[[T], int] = lambda _: 1,
        max_batch_cost: int | None = None,
        run_overhead: int = 1,
        label: str = "",
    ) -> None:
        self._predict = predict
        self._label = label  # the deployment, in spans and metrics
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._workers = workers  # batches run at once (ONNX Runtime sessions take concurrent runs)
        self._cost = cost
        self._max_batch_cost = max_batch_cost  # a batch's items cost at most this, unless one item alone does
        self._run_overhead = run_overhead  # what one more `predict` call costs, in cost units (see `runs`)
        self._waiting: OrderedDict[str, deque[_Request[T, R]]] = OrderedDict()  # owner -> its requests, in turn
        self._size = 0  # items waiting
        self._running: list[tuple[frozenset[str], int]] = []  # the owners and the cost of each batch in flight
        self._ready = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def __call__(self, items: Sequence[T], owner: str = "") -> list[R]:
        if not items:
            return []
        request: _Request[T, R] = _Request(items, owner, caller=telemetry.capture())
        with self._ready:
            self._ensure_threads()
            if owner not in self._waiting:
                self._waiting[owner] = deque()
                self._waiting.move_to_end(owner, last=False)  # served least recently: first in the next batch
            self._waiting[owner].append(request)
            self._size += len(items)
            self._ready.notify()
        return request.future.result()

    def close(self) -> None:
        """Stop the batching threads once the batches in flight are done."""
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout=10)
        with self._ready:
            self._stopping = False  # a later call starts new threads

    def waiting(self) -> int:
        """Items not yet handed to a batch."""
        with self._ready:
            return self._size

    def _ensure_threads(self) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        while len(self._threads) < self._workers:
            thread = threading.Thread(target=self._loop, name="micro-batcher", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._takeable() and not (self._stopping and not self._size):
                    self._ready.wait()
                if not self._size:  # stopping, and nothing left to run
                    return
                deadline = time.monotonic() + self._max_wait_s
                while self._size < self._max_batch_size and not self._stopping:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._ready.wait(remaining)
                batch, cost = self._take(self._held())
                running = (frozenset(request.owner for request, _ in batch), cost)
                self._running.append(running)
                more = self._size > 0
            if more:  # another worker may start on what is left while this one runs
                with self._ready:
                    self._ready.notify()
            try:
                self._run(batch)
            finally:
                with self._ready:
                    self._running.remove(running)
                    self._ready.notify_all()  # what was held back for this batch may start

    def _held(self) -> set[str]:
        """Owners whose items wait for their own running batches to end (called holding the lock). Concurrent runs
        share the engine's threads: beside a full batch (the cost cap in flight: a big request's), another batch of
        the same owners would only slow both, while another owner's request starts at once and is answered after
        its own run. Beside lighter batches (many small requests) anyone's next batch starts."""
        cap = self._max_batch_cost
        if cap is None or sum(cost for _, cost in self._running) < cap:
            return set()
        return {owner for owners, _ in self._running for owner in owners}

    def _takeable(self) -> bool:
        held = self._held()
        return any(owner not in held for owner in self._waiting)

    def _take(self, held: set[str]) -> tuple[list[tuple[_Request[T, R], int]], int]:
        """The next batch and its cost: one item per owner in turn (but `held`), until the size or cost cap (called
        holding the lock)."""
        batch: list[tuple[_Request[T, R], int]] = []
        spent = 0
        while len(batch) < self._max_batch_size:
            owner = next((o for o in self._waiting if o not in held), None)
            if owner is None:
                break
            requests = self._waiting[owner]
            request = requests[0]
            cost = self._cost(request.items[request.taken])
            if batch and self._max_batch_cost is not None and spent + cost > self._max_batch_cost:
                break
            batch.append((request, request.taken))
            spent += cost
            request.taken += 1
            self._size -= 1
            if request.taken == len(request.items):
                requests.popleft()
            if requests:
                self._waiting.move_to_end(owner)  # the next item comes from the next owner
            else:
                del self._waiting[owner]
        return batch, spent

    def _run(self, batch: list[tuple[_Request[T, R], int]]) -> None:
        """The batch as runs of similar cost, cheapest first, each delivered as it ends: a short request that
        shares a batch with long ones is answered after its own run, not theirs."""
        costs = [self._cost(request.items[i]) for request, i in batch]
        order = sorted(range(len(batch)), key=costs.__getitem__)
        for cut in runs([costs[k] for k in order], self._max_batch_size, self._run_overhead):
            self._run_once([batch[k] for k in order[cut]])

    def _run_once(self, batch: list[tuple[_Request[T, R], int]]) -> None:
        with telemetry.batch_span(self._label, [request.caller for request, _ in batch]):
            self._run_traced(batch)

    def _run_traced(self, batch: list[tuple[_Request[T, R], int]]) -> None:
        try:
            results = self._predict([request.items[i] for request, i in batch])
        except Exception:
            # One bad request must not fail its neighbours: run each one's items alone so only it gets the error.
            by_request: dict[_Request[T, R], list[int]] = {}
            for request, i in batch:
                by_request.setdefault(request, []).append(i)
            for request, indexes in by_request.items():
                try:
                    alone = self._predict([request.items[i] for i in indexes])
                except Exception as exc:
                    self._fail(request, exc)
                    continue
                self._deliver([(request, i) for i in indexes], alone)
            return
        self._deliver(batch, results)

    def _deliver(self, batch: list[tuple[_Request[T, R], int]], results: list[R]) -> None:
        """Store each item's result; a request whose last item this was gets its answer."""
        done = []
        with self._ready:  # other workers deliver to the same request
            for (request, i), result in zip(batch, results, strict=True):
                request.results[i] = result
                request.left -= 1
                if request.left == 0:
                    done.append(request)
        for request in done:
            if not request.future.done():
                request.future.set_result(cast("list[R]", request.results))

    def _fail(self, request: _Request[T, R], exc: Exception) -> None:
        """The request gets `exc`; its items not yet taken are dropped."""
        with self._ready:
            for owner, requests in list(self._waiting.items()):
                if request in requests:
                    requests.remove(request)
                    self._size -= len(request.items) - request.taken
                    if not requests:
                        del self._waiting[owner]
        if not request.future.done():
            request.future.set_exception(exc)


def runs(costs: Sequence[int], max_rows: int, overhead: int) -> list[slice]:
    """Cut ascending `costs` into consecutive runs of at most `max_rows`, at the least total, where a run costs
    `overhead` + rows x its largest cost (what padding every input to the longest makes a model compute).
    Exact, by dynamic programming over the cut points: O(n x max_rows)."""
    n = len(costs)
    best = [0] + [0x7FFFFFFFFFFF] * n  # best[i]: the cheapest cutting of the first i
    cut = [0] * (n + 1)
    for i in range(1, n + 1):
        for j in range(max(0, i - max_rows), i):
            total = best[j] + overhead + (i - j) * costs[i - 1]
            if total < best[i]:
                best[i], cut[i] = total, j
    slices: list[slice] = []
    while n:
        slices.append(slice(cut[n], n))
        n = cut[n]
    return slices[::-1]
