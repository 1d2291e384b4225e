"""Request dependencies shared by the HTTP routers: the service, the caller, the extra-parameters mode."""

from typing import Annotated, cast

from fastapi import Depends, Header

from shared.application.gateway import InferenceService
from shared.bootstrap import get_service
from shared.domain.auth import Caller
from shared.domain.errors import InvalidInput
from shared.runtimes.base import ExtraMode


def service() -> InferenceService:
    return get_service()


def caller(
    api_key: Annotated[str | None, Header(alias="api-key")] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Caller:
    if api_key is None and authorization and authorization.lower().startswith("bearer "):
        api_key = authorization[7:].strip()
    return get_service().keys.authenticate(api_key)


def extra_mode(extra: Annotated[str, Header(alias="extra-parameters")] = "error") -> ExtraMode:
    if extra not in ("error", "drop", "pass-through"):
        raise InvalidInput(
            "extra-parameters must be error, drop or pass-through", loc=("header", "extra-parameters"), input=extra
        )
    return cast(ExtraMode, extra)


Service = Annotated[InferenceService, Depends(service)]
Auth = Annotated[Caller, Depends(caller)]
Extra = Annotated[ExtraMode, Depends(extra_mode)]
DeploymentHeader = Annotated[str | None, Header(alias="azureml-model-deployment")]
