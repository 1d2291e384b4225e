"""The config's credentials: a tenant's API keys (id, sha256, expiry) and the token issuers it trusts (Entra ID or
any OIDC issuer signing RS256 JWTs), with the claim values that map a token to a tenant or to an admin."""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

KeyId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiKey(_Strict):
    """One key of a tenant, as `[[tenants.keys]]`: its sha256, an id that usage records name (not secret), and
    an optional expiry (RFC 3339 with an offset) after which the key is refused."""

    id: KeyId | None = None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    expires: AwareDatetime | None = None

    @property
    def key_id(self) -> str:
        """The configured id, or the start of its sha256 (what a key of `key_sha256 = [...]` is named by)."""
        return self.id or self.sha256[:8]


class Issuer(_Strict):
    """A token issuer (`[[auth.issuers]]`): tokens it signs (RS256) for one of `audiences` are accepted, and the
    value of `claim` in them names the tenant (`tenants`) or makes the caller an admin (`admins`). Its signing
    keys come from OIDC metadata (`metadata_url`), a JWKS URL (`jwks_uri`) or a JWKS file (`jwks_file`)."""

    issuer: str = Field(min_length=1)
    audiences: tuple[str, ...] = Field(min_length=1)
    metadata_url: str | None = None
    jwks_uri: str | None = None
    jwks_file: str | None = None
    # `oid` (the caller's object id), `appid` (the client app: `azp` in v2 tokens), `sub`, `roles`, `groups`, ...
    claim: str = Field(default="oid", min_length=1)
    tenants: dict[str, str] = Field(default_factory=dict)  # claim value → tenant
    admins: tuple[str, ...] = ()  # claim values that may read every tenant's usage (an admin key's rights)

    @model_validator(mode="after")
    def _one_key_source(self) -> Issuer:
        given = [name for name in ("metadata_url", "jwks_uri", "jwks_file") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(f"issuer {self.issuer!r}: give one of metadata_url, jwks_uri or jwks_file")
        return self

    @property
    def key_source(self) -> str:
        return self.metadata_url or self.jwks_uri or self.jwks_file or ""


class AuthConfig(_Strict):
    issuers: tuple[Issuer, ...] = ()
