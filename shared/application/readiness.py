"""Readiness: every backend this instance uses answers a cheap probe within a short timeout, probed in
parallel, so `/health/ready` fails (503, naming the component) when storage is unreachable instead of claiming
health while every request fails. `/health` stays liveness: the process is up."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from shared.domain.errors import InferqError
from shared.domain.ports import Pingable


@dataclass(frozen=True)
class Readiness:
    components: Mapping[str, str]  # component → "ok" or why not

    @property
    def ready(self) -> bool:
        return all(state == "ok" for state in self.components.values())

    @property
    def failing(self) -> list[str]:
        return [name for name, state in self.components.items() if state != "ok"]


class ReadinessProbe:
    def __init__(self, components: Mapping[str, Pingable], timeout_s: float = 5.0) -> None:
        self.components = dict(components)
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(len(self.components) or 1, thread_name_prefix="readiness")

    def check(self) -> Readiness:
        futures = {name: self._pool.submit(port.ping) for name, port in self.components.items()}
        wait(futures.values(), timeout=self.timeout_s)
        states: dict[str, str] = {}
        for name, future in futures.items():
            if not future.done():
                states[name] = f"no answer within {self.timeout_s:g} s"
            elif (exc := future.exception()) is not None:
                states[name] = exc.message if isinstance(exc, InferqError) else f"{type(exc).__name__}: {exc}"
            else:
                states[name] = "ok"
        return Readiness(states)
