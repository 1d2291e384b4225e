"""The domain's error tree. Errors carry no HTTP codes: `functions/http_errors.py` maps them.

InferqError
├── ConfigError               the config file or settings are invalid (fails at start)
├── AuthError                 no valid key
├── Forbidden                 a valid key asking for what it may not see (another tenant's usage)
├── NotFound                  unknown model, job, or another tenant's job
├── Conflict                  a state that forbids the operation (cancel a running job, reused key)
├── InvalidInput              bad request content (loc names the parameter) — permanent
│   └── InputTooLarge         an input over a size limit (an image's bytes or pixels)
├── ContentFiltered           a prompt its deployment's content safety refuses (result: what it found)
├── QuotaExceeded             a spending limit is reached (retry_after_s)
│   └── RateLimited           a tenant's requests or tokens per minute are used up (state: the limits)
├── PermanentJobError         the job can't succeed: fail it, don't retry
│   ├── ModelError            the runner rejected or failed on the input
│   └── ScriptError           a scoring script's run() raised (its message is the job's error)
└── TransientError            may succeed later: re-raise so the queue redelivers
    ├── StorageUnavailable    a store, queue or stream did not answer
    ├── ModelNotBuilt         a deployment's model folder is still to be built (`make chat-model`)
    └── ConcurrencyConflict   an optimistic write lost a race
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.domain.content_safety import FilterResult
    from shared.domain.rates import RateState


class InferqError(Exception):
    code = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(InferqError):
    code = "InvalidConfig"


class AuthError(InferqError):
    code = "Unauthorized"


class Forbidden(InferqError):
    code = "Forbidden"


class NotFound(InferqError):
    code = "NotFound"


class Conflict(InferqError):
    code = "Conflict"


class InvalidInput(InferqError):
    code = "InvalidInput"

    def __init__(self, message: str, loc: tuple[str | int, ...] = ("body",), input: Any = None) -> None:
        super().__init__(message)
        self.loc = loc
        self.input = input


class InputTooLarge(InvalidInput):
    code = "PayloadTooLarge"


class ContentFiltered(InferqError):
    code = "content_filter"  # Azure OpenAI's code, which clients test for

    def __init__(self, message: str, result: FilterResult) -> None:
        super().__init__(message)
        self.result = result


class QuotaExceeded(InferqError):
    code = "OutOfQuota"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimited(QuotaExceeded):
    code = "RateLimitExceeded"

    def __init__(self, message: str, retry_after_s: int, state: RateState) -> None:
        super().__init__(message, retry_after_s)
        self.state = state


class PermanentJobError(InferqError):
    code = "JobFailed"


class ModelError(PermanentJobError):
    code = "ModelError"


class ScriptError(PermanentJobError):
    code = "ScriptError"


class TransientError(InferqError):
    code = "ServiceUnavailable"


class StorageUnavailable(TransientError):
    pass


class ModelNotBuilt(TransientError):
    """A deployment whose model is built on this machine, not built yet: its requests are refused (503), the
    host still serves the others."""

    code = "DeploymentUnavailable"


class ConcurrencyConflict(TransientError):
    code = "ConcurrencyConflict"
