"""The declarative config: deployments, tenants and prices, validated at start.

A TOML file (path from `Settings.config`); API keys are kept only as sha256 hashes.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.errors import ConfigError, NotFound

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Meter(StrEnum):
    INPUT_TOKENS = "input_tokens"
    OUTPUT_TOKENS = "output_tokens"


class RunnerKind(StrEnum):
    EMBEDDINGS = "embeddings"
    CHAT = "chat-completion"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    """Where a deployment's files come from: a local folder, a Blob URL or `s3://`, each file checked by sha256."""

    source: str
    files: dict[str, Sha256]


class Deployment(_Strict):
    name: str
    kind: RunnerKind
    model_name: str
    model_provider: str = "inferq"
    description: str = ""
    model: ModelSpec
    max_tokens: int = Field(default=256, gt=0)
    dimensions: int | None = None
    prices: dict[Meter, Decimal] = Field(default_factory=dict)

    @field_validator("prices")
    @classmethod
    def _non_negative(cls, prices: dict[Meter, Decimal]) -> dict[Meter, Decimal]:
        for meter, price in prices.items():
            if price < 0:
                raise ValueError(f"price of {meter} must not be negative")
        return prices


class Tenant(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
    key_sha256: tuple[Sha256, ...] = ()
    demo: bool = False  # the local host adds INFERQ_API_KEY (or a generated key) to this tenant
    monthly_budget: Decimal | None = None


class AppConfig(_Strict):
    currency: str = "USD"
    admin_key_sha256: tuple[Sha256, ...] = ()
    tenants: tuple[Tenant, ...]
    deployments: tuple[Deployment, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> AppConfig:
        for label, names in (
            ("deployments", [d.name for d in self.deployments]),
            ("tenants", [t.name for t in self.tenants]),
        ):
            seen: set[str] = set()
            for name in names:
                if name.lower() in seen:
                    raise ValueError(f"{label}: duplicate name {name!r} (names are case-insensitive)")
                seen.add(name.lower())
        return self

    @property
    def default_deployment(self) -> Deployment:
        return self.deployments[0]

    def deployment(self, name: str | None) -> Deployment:
        if name is None:
            return self.default_deployment
        for d in self.deployments:
            if d.name.lower() == name.lower():
                return d
        raise NotFound(f"Unknown model {name!r}. Known: {', '.join(d.name for d in self.deployments)}.")

    def tenant(self, name: str) -> Tenant:
        for t in self.tenants:
            if t.name == name:
                return t
        raise NotFound(f"Unknown tenant {name!r}.")

    def with_tenant_key(self, tenant_name: str, key_sha256: str) -> AppConfig:
        tenants = tuple(
            t.model_copy(update={"key_sha256": (*t.key_sha256, key_sha256)}) if t.name == tenant_name else t
            for t in self.tenants
        )
        return self.model_copy(update={"tenants": tenants})


def load_config(path: Path) -> AppConfig:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path} (set INFERQ_CONFIG)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return AppConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from exc
