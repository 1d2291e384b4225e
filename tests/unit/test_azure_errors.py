"""Azure SDK exceptions become domain errors at the adapter boundary, with the SDK's exception as the cause."""

from __future__ import annotations

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.eventhub.exceptions import ConnectError, EventHubError

from shared.adapters.azure.errors import translated
from shared.adapters.azure.tables import table_key
from shared.domain.errors import ConcurrencyConflict, Conflict, InferqError, NotFound, StorageUnavailable


def http_error(status: int) -> HttpResponseError:
    error = HttpResponseError(message=f"status {status}")
    error.status_code = status
    return error


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (ResourceExistsError("exists"), Conflict),
        (ResourceModifiedError("etag"), ConcurrencyConflict),
        (http_error(412), ConcurrencyConflict),
        (ResourceNotFoundError("gone"), NotFound),
        (http_error(409), Conflict),
        (http_error(503), StorageUnavailable),
        (http_error(500), StorageUnavailable),
        (ServiceRequestError("connection refused"), StorageUnavailable),
        (ServiceResponseError("reset"), StorageUnavailable),
        (ClientAuthenticationError("no credential"), StorageUnavailable),
    ],
)
def test_sdk_errors_map_to_domain_errors(raised: Exception, expected: type[InferqError]) -> None:
    with pytest.raises(expected) as caught, translated("job job_1"):
        raise raised
    assert type(caught.value) is expected and caught.value.__cause__ is raised
    assert caught.value.message.startswith("job job_1")


def test_event_hubs_errors_are_transient_only_where_the_stream_says_so() -> None:
    with pytest.raises(StorageUnavailable, match="ConnectError"), translated("publish", transient=(EventHubError,)):
        raise ConnectError("unreachable")
    with pytest.raises(ValueError), translated("publish"):
        raise ValueError("a bug is not an outage")


def test_table_keys_keep_plain_ids_and_digest_the_rest() -> None:
    assert table_key("job_0123abc") == "job_0123abc"
    assert table_key("job_1:input_tokens") == "job_1:input_tokens"
    odd = {table_key(v) for v in ("a/b", "a#b", "a?b", "a\\b", "~a", "x" * 300, "tab\there")}
    assert len(odd) == 7 and all(k.startswith("~") and len(k) == 65 for k in odd)
