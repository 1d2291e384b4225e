"""Azure SDK exceptions made domain errors at the adapter boundary (`with translated("what"): ...`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)

from shared.domain.errors import ConcurrencyConflict, Conflict, NotFound, StorageUnavailable


@contextmanager
def translated(what: str, *, transient: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Exists → Conflict, precondition failed → ConcurrencyConflict, missing → NotFound, anything else the
    service said or the network did → StorageUnavailable (transient: the caller retries or keeps the work).
    `transient` adds foreign types outside azure-core's tree (the Event Hubs client's `EventHubError`)."""
    try:
        yield
    except ResourceExistsError as exc:
        raise Conflict(f"{what}: already exists") from exc
    except ResourceModifiedError as exc:
        raise ConcurrencyConflict(f"{what}: changed since it was read") from exc
    except ResourceNotFoundError as exc:
        raise NotFound(f"{what}: not found") from exc
    except HttpResponseError as exc:
        if exc.status_code is None:  # raised before any answer (e.g. no credential could be had)
            raise StorageUnavailable(f"{what}: {type(exc).__name__}: {_first_line(exc.message)}") from exc
        if exc.status_code == 412:
            raise ConcurrencyConflict(f"{what}: changed since it was read") from exc
        if exc.status_code == 409:
            raise Conflict(f"{what}: conflict ({status_of(exc)[1]})") from exc
        if exc.status_code == 404:
            raise NotFound(f"{what}: not found") from exc
        raise StorageUnavailable(f"{what}: HTTP {exc.status_code} {status_of(exc)[1] or exc.reason}") from exc
    except AzureError as exc:  # no answer: ServiceRequestError, ServiceResponseError, credential failures
        raise StorageUnavailable(f"{what}: {type(exc).__name__}: {_first_line(exc.message)}") from exc
    except transient as exc:
        raise StorageUnavailable(f"{what}: {type(exc).__name__}: {_first_line(str(exc))}") from exc


def status_of(exc: HttpResponseError) -> tuple[int | None, str]:
    """The HTTP status and the storage error code ("PopReceiptMismatch", "EntityAlreadyExists", ...)."""
    code = getattr(exc, "error_code", None)  # set by the storage and tables clients
    return exc.status_code, str(getattr(code, "value", code) or "")


def _first_line(text: object) -> str:
    return str(text).strip().splitlines()[0] if str(text).strip() else ""
