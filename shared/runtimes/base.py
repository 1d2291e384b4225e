"""What every kind of model shares: the `Runtime` a registry loads, the `Kind` protocol each kind's module
implements (edge check, estimate, execution, rendering), and the helpers their edge checks use.

A kind is one module (`embeddings.py`, `chat.py`, `score.py`) with one `KIND` object; the registry's table is
the only place that maps a deployment's `kind` to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from shared.domain.config import Deployment, RunnerKind
from shared.domain.content_safety import TextScreen
from shared.domain.errors import InvalidInput
from shared.domain.jobs import Job, JobError, JobStatus
from shared.domain.ports import BlobStore
from shared.schemas.usage import Meter
from shared.settings import Settings

# The `extra-parameters` header: unknown body parameters are an error, dropped, or passed to the runner.
ExtraMode = Literal["error", "drop", "pass-through"]


class Fetch(Protocol):
    def __call__(self, files: dict[str, str], of: Literal["model", "code"] = "model") -> Path:
        """Files (name → sha256) of the deployment's model (or a scoring script's code), fetched from their source
        and verified, in a local folder."""
        ...


class Runtime(Protocol):
    """A deployment's loaded model (MLServer's `MLModel`): load once per process, close on shutdown.
    Each kind's runtime adds its own call (`predict` or `generate`), which only that kind's `execute` uses."""

    def load(self) -> None: ...
    def close(self) -> None: ...


R = TypeVar("R", bound=Runtime)


@dataclass(frozen=True)
class Edge:
    """What a kind's edge check may use besides the request: the header's extra mode, the settings' limits,
    and the kind's edge tool for this deployment (a prompt token counter, say), fetched on first use."""

    extra: ExtraMode
    settings: Settings
    tool: Callable[[], Any] = lambda: None


@dataclass(frozen=True)
class Work:
    """What a job's execution may use besides its payload and runtime."""

    job: Job
    deployment: Deployment
    settings: Settings
    blobs: BlobStore  # streamed chunks
    stopped: Callable[[], bool]  # the job was cancelled meanwhile
    progress: Callable[[], None] = lambda: None  # a chunk was written: wake the relay
    screen: TextScreen | None = None  # content safety of the job's deployment and tenant, where it is on


@dataclass(frozen=True)
class TaskOutput:
    result: BaseModel | None
    usage: dict[Meter, int] = field(default_factory=dict)
    # A task that did billable work can still end otherwise: a generation cut short by a failure (FAILED, with
    # the error) or by its client (CANCELLED). Its usage is billed all the same.
    status: JobStatus = JobStatus.SUCCEEDED
    error: JobError | None = None


class Kind(Protocol[R]):
    kind: RunnerKind
    cancellable: bool  # a running job checks `Work.stopped` as it goes, so it may be cancelled while it runs
    # The same payload always bills the same units: its usage may be published before the job's final write (a
    # redelivery after a crash in between bills, and tells the client, the same numbers). Sampled generation not.
    deterministic_usage: bool
    # Its check reads only the request (no tokenizer run, no image decoded, no model): on the embedded backend a
    # small request of this kind is admitted and queued on the event loop, which costs less than a thread hand-off.
    light_check: bool

    def runtime(self, deployment: Deployment, fetch: Fetch, settings: Settings) -> R:
        """The deployment's runtime, its files fetched, not loaded yet."""
        ...

    def edge_tool(self, deployment: Deployment, fetch: Fetch) -> Any:
        """What the HTTP edge needs to check a request (never the model itself), or None."""
        ...

    def check(self, request: Any, deployment: Deployment, edge: Edge) -> dict[str, Any]:
        """The payload to queue for a parsed request, or InvalidInput naming the parameter."""
        ...

    def estimate(self, deployment: Deployment, payload: dict[str, Any]) -> int:
        """The tokens a request is charged at the edge, before its job reports the real count."""
        ...

    def execute(self, work: Work, payload: dict[str, Any], runtime: R) -> TaskOutput:
        """Run the job; InvalidInput / PermanentJobError fail it, TransientError retries it."""
        ...

    def render(self, result: dict[str, Any]) -> Any:
        """The response body of a succeeded job's result."""
        ...


def parse_payload(model: type[BaseModel], payload: dict[str, Any]) -> Any:
    """A queued payload as its kind's request model; InvalidInput naming the first problem."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"invalid payload: {first['msg']}", loc=("body", *first["loc"])) from exc


def extras_allowed(request: BaseModel, extra: ExtraMode) -> dict[str, Any]:
    """The request's unknown parameters, or InvalidInput naming the first when the header says `error`."""
    extras = dict(request.model_extra or {})
    if extras and extra == "error":
        name = next(iter(extras))
        raise InvalidInput(
            f"Extra parameter '{name}' is not allowed (send 'extra-parameters: drop' to ignore it).",
            loc=("body", name),
            input=extras[name],
        )
    return extras


def check_dimensions(requested: int | None, deployment: Deployment) -> None:
    """An embeddings model returns its own number of dimensions: a request may ask for that number only."""
    if requested is not None and requested != deployment.dimensions:
        raise InvalidInput(
            f"Model '{deployment.name}' returns {deployment.dimensions} dimensions and can't change that; "
            f"got dimensions={requested}.",
            loc=("body", "dimensions"),
            input=requested,
        )


def check_unicode(value: Any, loc: tuple[str | int, ...] = ("body",)) -> None:
    """InvalidInput naming the first string (or key) that UTF-8 can't carry: JSON escapes can spell lone
    surrogates ("\\ud800"), which no queue message, tokenizer or response could hold."""
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInput("The text is not valid Unicode (a lone surrogate).", loc=loc) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_unicode(key, loc)
            check_unicode(item, (*loc, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_unicode(item, (*loc, index))


SPECIAL_TOKENS = 2  # what a tokenizer adds to a text: [CLS] and [SEP], <s> and </s>


def token_bound(text: Any) -> int:
    """The most tokens a text can take, for the estimate reserved at admission (then settled to the real count):
    one per UTF-8 byte (byte-level BPE and byte fallback take at most that, WordPiece at most one per character),
    plus the special tokens. O(1) for ASCII text."""
    if not isinstance(text, str):
        return 0
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return size + SPECIAL_TOKENS
