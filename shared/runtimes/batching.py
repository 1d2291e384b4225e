"""Micro-batching as a wrapper: concurrent `predict` calls for one deployment are merged into one run.

Runners never see it (MLServer's adaptive batching, in threads): callers block, one thread runs the batch. A
batch is whatever is waiting when the engine is free (continuous batching): a lone request runs at once, and
requests that arrive while a batch runs form the next one. `max_wait_s` > 0 also holds a batch open that long
for more (fuller batches for a lighter load, at that much latency).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

_STOP: object = object()
T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        predict: Callable[[Sequence[T]], list[R]],
        max_batch_size: int,
        max_wait_s: float,
        workers: int = 1,
    ) -> None:
        self._predict = predict
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._workers = workers  # batches run at once (ONNX Runtime sessions take concurrent runs)
        self._pending: queue.Queue[tuple[Sequence[T], Future[list[R]]]] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()

    def __call__(self, items: Sequence[T]) -> list[R]:
        future: Future[list[R]] = Future()
        self._ensure_thread()
        self._pending.put((items, future))
        return future.result()

    def close(self) -> None:
        """Stop the batching threads once the batches in flight are done."""
        with self._start_lock:
            for thread in self._threads:
                if thread.is_alive():
                    self._pending.put(_STOP)  # type: ignore[arg-type]
            self._threads = []

    def _ensure_thread(self) -> None:
        with self._start_lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            while len(self._threads) < self._workers:
                thread = threading.Thread(target=self._loop, name="micro-batcher", daemon=True)
                thread.start()
                self._threads.append(thread)

    def _loop(self) -> None:
        while True:
            first = self._pending.get()
            if first is _STOP:
                return
            batch = [first]
            size = len(batch[0][0])
            deadline = time.monotonic() + self._max_wait_s
            while size < self._max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    item = self._pending.get(timeout=remaining) if remaining > 0 else self._pending.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._pending.put(item)  # seen again (by this thread or another) after this batch runs
                    break
                batch.append(item)
                size += len(item[0])
            self._run(batch)

    def _run(self, batch: list[tuple[Sequence[T], Future[list[R]]]]) -> None:
        merged = [x for items, _ in batch for x in items]
        try:
            results = self._predict(merged)
        except Exception:
            # One bad request must not fail its neighbours: run each alone so only it gets the error.
            for items, future in batch:
                try:
                    future.set_result(self._predict(items))
                except Exception as exc:
                    future.set_exception(exc)
            return
        start = 0
        for items, future in batch:
            future.set_result(results[start : start + len(items)])
            start += len(items)
