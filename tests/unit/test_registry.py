"""The runtime registry's lock per deployment: a model that takes long to load holds up only its own
deployment's jobs, and threads asking for the same deployment together load it once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from shared.domain.config import RunnerKind
from shared.domain.errors import ConfigError
from shared.domain.jobs import JobStatus
from shared.runtimes.base import Kind
from shared.runtimes.registry import RuntimeRegistry
from tests.unit.fakes import (
    CONFIG,
    EMBED,
    SHADOW,
    FakeKind,
    FakeModels,
    FakeRuntime,
    fake_app,
    fake_kinds,
    run_next,
    submit,
    take,
    unit_settings,
)

SLOW, FAST = CONFIG.deployment(SHADOW), CONFIG.deployment(EMBED)
DEADLINE_S = 10  # only ever waited out when the registry is broken


class Background:
    """`call` in a thread of its own; `done` is set once it returned or raised."""

    def __init__(self, call: Callable[[], Any], name: str) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._call = call
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._call()
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def join(self) -> Any:
        self._thread.join(DEADLINE_S)
        assert self.done.is_set(), f"{self._thread.name} did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def embeddings(kinds: Mapping[RunnerKind, Kind[Any]]) -> FakeKind:
    kind = kinds[RunnerKind.EMBEDDINGS]
    assert isinstance(kind, FakeKind)
    return kind


def slow_registry(gate: threading.Event) -> tuple[RuntimeRegistry, FakeKind]:
    """A registry whose SLOW deployment's load() blocks until `gate` is set."""
    kinds = fake_kinds({SLOW.name: gate})
    return RuntimeRegistry(unit_settings(), FakeModels(), kinds=kinds), embeddings(kinds)


def test_loading_a_slow_model_does_not_hold_up_another_deployment() -> None:
    gate = threading.Event()
    registry, kind = slow_registry(gate)
    slow = Background(lambda: registry.runtime(SLOW), "loads-slow")
    try:
        assert kind.load_started(SLOW.name).wait(DEADLINE_S)  # stuck in load(), holding its deployment's lock
        fast = Background(lambda: registry.runtime(FAST), "loads-fast")
        assert fast.done.wait(DEADLINE_S), "the other deployment waited for the slow model's load"
        runtime = fast.join()
        assert isinstance(runtime, FakeRuntime) and runtime.loads == 1
        assert not slow.done.is_set()  # still loading meanwhile
    finally:
        gate.set()
    assert slow.join().loads == 1


def test_a_job_on_another_deployment_runs_while_a_slow_model_loads() -> None:
    gate = threading.Event()
    kinds = fake_kinds({SLOW.name: gate})
    app = fake_app(kinds=kinds)
    slow_job = submit(app, {"input": "slow one"}, SHADOW)
    slow_body = take(app)
    fast_job = submit(app, {"input": "a b c"})
    slow = Background(lambda: app.worker.process(slow_body), "worker-1")
    try:
        assert embeddings(kinds).load_started(SHADOW).wait(DEADLINE_S)
        fast = Background(lambda: run_next(app), "worker-2")
        assert fast.done.wait(DEADLINE_S), "the embeddings job waited for another deployment's model to load"
        done = fast.join()
        assert done.id == fast_job.id and done.status is JobStatus.SUCCEEDED
        assert done.result is not None and done.result["data"][0]["embedding"] == [3]
        running = app.store.get(slow_job.id)
        assert running is not None and running.status is JobStatus.RUNNING
    finally:
        gate.set()
    slow.join()
    finished = app.store.get(slow_job.id)
    assert finished is not None and finished.status is JobStatus.SUCCEEDED


class ObservedRegistry(RuntimeRegistry):
    """Says when a thread asks for a deployment's lock (it found no loaded runtime on its first look)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asking: dict[str, threading.Event] = {}

    def _lock(self, key: str) -> threading.Lock:
        lock = super()._lock(key)
        event = self.asking.get(threading.current_thread().name)
        if event is not None:
            event.set()
        return lock


def test_threads_asking_for_the_same_deployment_together_load_it_once() -> None:
    gate = threading.Event()
    kinds = fake_kinds({SLOW.name: gate})
    kind = embeddings(kinds)
    registry = ObservedRegistry(unit_settings(), FakeModels(), kinds=kinds)
    second_asks = registry.asking["second"] = threading.Event()
    first = Background(lambda: registry.runtime(SLOW), "first")
    try:
        assert kind.load_started(SLOW.name).wait(DEADLINE_S)
        second = Background(lambda: registry.runtime(SLOW), "second")
        # The second thread found nothing loaded and now queues behind the first one's load.
        assert second_asks.wait(DEADLINE_S)
    finally:
        gate.set()
    assert first.join() is second.join()
    assert kind.made[SLOW.name] == 1 and kind.runtimes[SLOW.name].loads == 1


def test_a_load_that_fails_is_tried_again_by_the_next_job() -> None:
    models = FakeModels(broken=(SLOW.model.source,))
    registry = RuntimeRegistry(unit_settings(), models, kinds=fake_kinds())
    with pytest.raises(ConfigError):
        registry.runtime(SLOW)
    models.broken = ()
    assert isinstance(registry.runtime(SLOW), FakeRuntime)
    assert models.fetched == [SLOW.model.source, SLOW.model.source]


def test_close_closes_every_loaded_runtime_and_a_later_job_loads_again() -> None:
    kinds = fake_kinds()
    registry = RuntimeRegistry(unit_settings(), FakeModels(), kinds=kinds)
    first = registry.runtime(FAST)
    assert registry.runtime(FAST) is first
    registry.close()
    assert isinstance(first, FakeRuntime) and first.closed
    assert registry.runtime(FAST) is not first
