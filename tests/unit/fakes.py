"""The app on fakes, for the handlers' unit tests: the in-memory adapters of every port, and fake kinds of model
whose runtimes are trivial (an embedding is the word count of its text, a token is a word, a score is an echo).
No ONNX, no files, no SQLite, no network.

A fake runtime can be told to fail (`errors`, raised by its next steps) or to do something while it runs
(`during`, called at each step: cancel the job, wait for a test's signal).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from shared.adapters.memory import (
    MemoryBlobStore,
    MemoryBudgetReservations,
    MemoryDeploymentStats,
    MemoryJobQueue,
    MemoryJobStore,
    MemoryUsageLedger,
    MemoryUsageLog,
)
from shared.bootstrap import Inferq, bootstrap
from shared.domain.auth import Caller, hash_key
from shared.domain.config import AppConfig, Deployment, RunnerKind
from shared.domain.errors import ConfigError, InvalidInput, ModelNotBuilt
from shared.domain.jobs import Job, JobStatus
from shared.runtimes import embeddings
from shared.runtimes.base import Edge, Fetch, Kind, TaskOutput, Work
from shared.runtimes.registry import RuntimeRegistry
from shared.schemas.messages import JobMessage
from shared.schemas.usage import Meter, UsageEvent
from shared.settings import Settings
from tests.conftest import ADMIN_KEY, KEYS

# Never created: `bootstrap` would open SQLite or files here only if an embedded adapter were missing (and the
# unit tests' conftest makes that an error).
NO_DISK = Path("/nonexistent/inferq-unit-tests")

EMBED, SHADOW, CHAT, SCORER = "all-MiniLM-L6-v2", "minilm-shadow", "tiny-random-chat", "linear-scorer"
ACME, GLOBEX, ADMIN = Caller("acme"), Caller("globex"), Caller("", is_admin=True)
BROKE = Caller("broke")  # a monthly budget of 0: every request is past it
LIMITED = Caller("limited")  # 2 requests a minute
METERED = Caller("metered")  # 100 tokens a minute
THRIFTY = Caller("thrifty")  # a monthly budget of 0.00001: 100 embedding tokens

# The example config's deployments (an embeddings model behind an endpoint that mirrors to a shadow, a chat
# model, a scoring script) with the test tenants and keys of tests/conftest.py, built in memory.
CONFIG = AppConfig.model_validate(
    {
        "currency": "USD",
        "admin_key_sha256": [hash_key(ADMIN_KEY)],
        "tenants": [
            {"name": "acme", "key_sha256": [hash_key(KEYS["acme"])]},
            {"name": "globex", "key_sha256": [hash_key(KEYS["globex"])]},
            {"name": "broke", "monthly_budget": "0"},
            {"name": "limited", "requests_per_minute": 2},
            {"name": "metered", "tokens_per_minute": 100},
            {"name": "thrifty", "monthly_budget": "0.00001"},
        ],
        "deployments": [
            {
                "name": EMBED,
                "kind": "embeddings",
                "model_name": "minilm",
                "model": {"source": "fake://minilm", "files": {}},
                "dimensions": 1,
                "prices": {"input_tokens": "0.0001"},
            },
            {
                "name": SHADOW,
                "kind": "embeddings",
                "model_name": "minilm-next",
                "model": {"source": "fake://minilm-next", "files": {}},
                "dimensions": 1,
                "prices": {"input_tokens": "0.0001"},
            },
            {
                "name": CHAT,
                "kind": "chat-completion",
                "model_name": "tiny",
                "model": {"source": "fake://tiny", "files": {}},
                "max_tokens": 8,
                "prices": {"input_tokens": "0.0005", "output_tokens": "0.0015"},
            },
            {
                "name": SCORER,
                "kind": "score",
                "model_name": "linear",
                "model": {"source": "fake://linear", "files": {}},
                "script": "score.py",
                "code": {"source": "fake://linear", "files": {"score.py": "0" * 64}},
                "prices": {"requests": "0.01"},
            },
        ],
        "endpoints": [{"name": EMBED, "traffic": {EMBED: 100}, "mirror": {SHADOW: 100}}],
    }
)


def words(text: Any) -> int:
    return len(text.split()) if isinstance(text, str) else 0


class FakeModels:
    """A ModelSource that fetches nothing: a deployment's folder is its source as written. A source in `broken`
    is missing, as a model whose files are not there."""

    def __init__(self, broken: tuple[str, ...] = ()) -> None:
        self.broken = broken
        self.fetched: list[str] = []

    def fetch(self, source: str, files: dict[str, str], what: str = "model") -> Path:  # noqa: ARG002
        self.fetched.append(source)
        if source in self.broken:
            raise ConfigError(f"model files missing: {source}")
        return Path(source)  # a name, never opened

    def manifest(self, source: str, name: str) -> dict[str, str]:  # noqa: ARG002
        raise ModelNotBuilt(f"not built: {source}")


class FakeRuntime:
    """What every fake kind's runtime shares: loads counted (and held at `gate` until a test opens it), steps
    counted, `errors` raised by the next steps, `during` called at each step."""

    def __init__(
        self, deployment: Deployment, gate: threading.Event | None = None, loading: threading.Event | None = None
    ) -> None:
        self.deployment = deployment
        self.gate = gate
        self.loading = loading or threading.Event()  # set once load() has started
        self.loads = 0
        self.steps = 0
        self.closed = False
        self.errors: list[Exception] = []
        self.during: Callable[[], None] | None = None

    def load(self) -> None:
        self.loading.set()
        if self.gate is not None and not self.gate.wait(30):
            raise TimeoutError(f"the load of {self.deployment.name} was never released")
        self.loads += 1

    def close(self) -> None:
        self.closed = True

    def step(self) -> None:
        self.steps += 1
        if self.during is not None:
            self.during()
        if self.errors:
            raise self.errors.pop(0)


class FakeKind:
    """The parts of the `Kind` protocol the fakes share: the runtimes they made, per deployment."""

    kind: RunnerKind
    cancellable = False
    deterministic_usage = True
    light_check = False

    def __init__(self, gates: Mapping[str, threading.Event] | None = None) -> None:
        self.gates = dict(gates or {})
        self.made: Counter[str] = Counter()  # runtimes made (not loaded) per deployment
        self.runtimes: dict[str, FakeRuntime] = {}
        self._started: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def load_started(self, deployment: str) -> threading.Event:
        """Set once a runtime of the deployment has started loading."""
        with self._lock:
            return self._started.setdefault(deployment, threading.Event())

    def runtime(self, deployment: Deployment, fetch: Fetch, settings: Settings) -> FakeRuntime:
        fetch(deployment.model.files)
        self.made[deployment.name] += 1
        gate, started = self.gates.get(deployment.name), self.load_started(deployment.name)
        runtime = self.runtimes[deployment.name] = FakeRuntime(deployment, gate, started)
        return runtime

    def edge_tool(self, deployment: Deployment, fetch: Fetch) -> None:
        return None

    def render(self, result: dict[str, Any]) -> Any:
        return result


class FakeEmbeddingsKind(FakeKind):
    """An embedding is one number, its text's word count; a token is a word. The edge charges 10 tokens a
    word (an over-estimate the job's real usage settles)."""

    kind = RunnerKind.EMBEDDINGS

    def check(self, request: dict[str, Any], deployment: Deployment, edge: Edge) -> dict[str, Any]:
        inputs = request.get("input")
        if not inputs:
            raise InvalidInput("input must not be empty", loc=("body", "input"), input=inputs)
        return dict(request)

    def estimate(self, deployment: Deployment, payload: dict[str, Any]) -> int:
        return 10 * sum(words(text) for text in _inputs(payload))

    def execute(self, work: Work, payload: dict[str, Any], runtime: FakeRuntime) -> TaskOutput:
        inputs = _inputs(payload)
        if not inputs:  # the worker checks again: a producer may queue anything
            raise InvalidInput("input must not be empty", loc=("body", "input"))
        runtime.step()
        return embeddings.output(work, [[float(words(text))] for text in inputs], sum(words(t) for t in inputs))


class FakeCompletion(BaseModel):
    text: str
    prompt_tokens: int
    completion_tokens: int


class FakeChatKind(FakeKind):
    """Generates `max_tokens` words ("w0 w1 ..."), one step each, and stops when its job is cancelled."""

    kind = RunnerKind.CHAT
    cancellable = True
    deterministic_usage = False

    def check(self, request: dict[str, Any], deployment: Deployment, edge: Edge) -> dict[str, Any]:
        return dict(request)

    def estimate(self, deployment: Deployment, payload: dict[str, Any]) -> int:
        return words(payload.get("prompt")) + int(payload.get("max_tokens", deployment.max_tokens))

    def execute(self, work: Work, payload: dict[str, Any], runtime: FakeRuntime) -> TaskOutput:
        prompt = words(payload.get("prompt"))
        generated: list[str] = []
        for i in range(int(payload.get("max_tokens", work.deployment.max_tokens))):
            runtime.step()
            generated.append(f"w{i}")
            if work.stopped():
                usage = {Meter.INPUT_TOKENS: prompt, Meter.OUTPUT_TOKENS: len(generated)}
                return TaskOutput(None, usage, JobStatus.CANCELLED)
        result = FakeCompletion(text=" ".join(generated), prompt_tokens=prompt, completion_tokens=len(generated))
        return TaskOutput(result, {Meter.INPUT_TOKENS: prompt, Meter.OUTPUT_TOKENS: len(generated)})


class FakeScoreKind(FakeKind):
    """Echoes the request's data, billed as one request."""

    kind = RunnerKind.SCORE

    def check(self, request: dict[str, Any], deployment: Deployment, edge: Edge) -> dict[str, Any]:
        return {"data": request}

    def estimate(self, deployment: Deployment, payload: dict[str, Any]) -> int:
        return 0

    def execute(self, work: Work, payload: dict[str, Any], runtime: FakeRuntime) -> TaskOutput:
        runtime.step()
        return TaskOutput(FakeScore(output=payload["data"]), {Meter.REQUESTS: 1})

    def render(self, result: dict[str, Any]) -> Any:
        return FakeScore.model_validate(result).output


class FakeScore(BaseModel):
    output: Any


def _inputs(payload: dict[str, Any]) -> list[str]:
    inputs = payload.get("input") or []
    return [inputs] if isinstance(inputs, str) else list(inputs)


def fake_kinds(gates: Mapping[str, threading.Event] | None = None) -> dict[RunnerKind, Kind[Any]]:
    """The fake kinds, their loads held at `gates` (deployment → event) where given."""
    return {
        RunnerKind.EMBEDDINGS: FakeEmbeddingsKind(gates),
        RunnerKind.CHAT: FakeChatKind(gates),
        RunnerKind.SCORE: FakeScoreKind(gates),
    }


def unit_settings(**fields: Any) -> Settings:
    """Settings naming paths that are never opened, and no backoff between ledger retries (no sleeps)."""
    paths = {"config": NO_DISK / "inferq.toml", "data_dir": NO_DISK, "models_dir": NO_DISK}
    settings = {"backend": "sqlite", "usage_ingest_backoff_s": 0, "stats_flush_s": 0, **paths, **fields}
    return Settings(**settings, _env_file=None)


def memory_adapters() -> dict[str, Any]:
    """A fresh set of in-memory adapters (two apps given the same set share their queues and stores)."""
    return {
        "queue": MemoryJobQueue("jobs"),
        "poison": MemoryJobQueue("jobs-poison"),
        "store": MemoryJobStore(),
        "blobs": MemoryBlobStore(),
        "stream": MemoryUsageLog(),
        "ledger": MemoryUsageLedger(),
        "stats": MemoryDeploymentStats(),
        "reservations": MemoryBudgetReservations(),
    }


def fake_app(
    settings: Settings | None = None,
    *,
    kinds: Mapping[RunnerKind, Kind[Any]] | None = None,
    models: FakeModels | None = None,
    **ports: Any,
) -> Inferq:
    """The app on in-memory adapters and fake kinds; `ports` replace any of the adapters."""
    settings = settings or unit_settings()
    adapters = memory_adapters()
    registry = RuntimeRegistry(settings, models or FakeModels(), kinds=kinds or fake_kinds())
    return bootstrap(settings, config=CONFIG, registry=registry, **(adapters | ports))


# --- driving the app ----------------------------------------------------------------------------------------
def submit(
    app: Inferq, payload: dict[str, Any], deployment: str = EMBED, caller: Caller = ACME, key: str | None = None
) -> Job:
    return app.gateway.submit(caller, app.config.deployment(deployment), payload, key).job


def take(app: Inferq) -> str:
    """The next queued message's body, taken off the queue (as a delivery that will be acknowledged)."""
    (message,) = app.queue.receive(1, 60)
    app.queue.delete(message)
    return message.body


def queued(app: Inferq) -> list[str]:
    """Every queued message's body, left on the queue."""
    messages = app.queue.receive(100, 0)
    return [m.body for m in messages]


def run_next(app: Inferq) -> Job:
    """Deliver the next message to the worker; the job as it stands after."""
    body = take(app)
    app.worker.process(body)
    job = app.store.get(_job_id(body))
    assert job is not None
    return job


def runtime(app: Inferq, deployment: str) -> FakeRuntime:
    """The deployment's fake runtime, loaded through the registry as a job would."""
    loaded = app.registry.runtime(app.config.deployment(deployment))
    assert isinstance(loaded, FakeRuntime)
    return loaded


def logged(app: Inferq) -> list[UsageEvent]:
    """Every usage event on the log, in publish order per partition (read without moving a checkpoint)."""
    log = app.stream
    assert isinstance(log, MemoryUsageLog)
    return [UsageEvent.model_validate_json(e.body) for p in range(log.partitions) for e in log.read("audit", p, 1000)]


def logged_bodies(app: Inferq) -> list[str]:
    log = app.stream
    assert isinstance(log, MemoryUsageLog)
    return [e.body for p in range(log.partitions) for e in log.read("audit", p, 1000)]


def _job_id(body: str) -> str:
    return JobMessage.model_validate_json(body).job_id
