"""Request dependencies shared by the HTTP routers: the handlers, the caller, the extra-parameters mode.

All `async def`: none does I/O, and FastAPI runs a plain `def` dependency in its thread pool, a thread hand-off
(and a GIL switch) per dependency per request."""

from typing import Annotated, cast

from fastapi import Depends, Header
from starlette.concurrency import run_in_threadpool

from shared.application.billing import Billing
from shared.application.gateway import Gateway
from shared.bootstrap import get_app
from shared.domain.auth import Caller
from shared.domain.errors import InvalidInput
from shared.runtimes.base import ExtraMode


async def gateway() -> Gateway:
    return get_app().gateway


async def billing() -> Billing:
    return get_app().billing


async def caller(
    api_key: Annotated[str | None, Header(alias="api-key")] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Caller:
    if api_key is None and authorization and authorization.lower().startswith("bearer "):
        api_key = authorization[7:].strip()  # an API key or a JWT (Entra ID): told apart by their shape
    gate = get_app().gateway
    if gate.credentials.ready(api_key):
        return gate.authenticate(api_key)
    # A changed config file to read, or an issuer's key set to fetch: not on the event loop.
    return await run_in_threadpool(gate.authenticate, api_key)


async def extra_mode(extra: Annotated[str, Header(alias="extra-parameters")] = "error") -> ExtraMode:
    mode = extra.lower()  # header values are matched case-insensitively, as Azure's front ends do
    if mode not in ("error", "drop", "pass-through"):
        raise InvalidInput(
            "extra-parameters must be error, drop or pass-through", loc=("header", "extra-parameters"), input=extra
        )
    return cast(ExtraMode, mode)


Gate = Annotated[Gateway, Depends(gateway)]
Bill = Annotated[Billing, Depends(billing)]
Auth = Annotated[Caller, Depends(caller)]
Extra = Annotated[ExtraMode, Depends(extra_mode)]
DeploymentHeader = Annotated[str | None, Header(alias="azureml-model-deployment")]
