"""Bearer JWTs (Entra ID, or any OIDC issuer) → callers: RS256 only, signed by a key of a configured issuer's key
set, for one of its audiences, within its lifetime (give or take `leeway_s` of clock skew); the issuer's `claim`
names the tenant. Every refusal is a `TokenRejected` saying why, without echoing the token's contents."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import jwt

from shared.domain.auth import Caller
from shared.domain.auth_config import Issuer
from shared.domain.errors import AuthError

ALGORITHM = "RS256"
_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")  # what of a header value may be echoed (an alg, a kid)


class TokenRejected(AuthError):
    """A bearer token that is not valid here (RFC 6750 `invalid_token`)."""


class SigningKeys(Protocol):
    """An issuer's signing keys by key id (`kid`), as its JWKS lists them."""

    def get(self, kid: str) -> Any | None:
        """The public key, or None; an unknown kid re-reads the key set (at most so often), which may block."""
        ...

    def ready(self, kid: str) -> bool:
        """True when `get(kid)` will answer without I/O (cached, or a re-read is not due)."""
        ...


def _echo(value: object) -> str:
    return repr(value) if isinstance(value, str) and _SAFE.match(value) else "(not shown)"


class TokenVerifier:
    def __init__(
        self,
        issuers: Sequence[Issuer],
        keys_for: Callable[[Issuer], SigningKeys],
        leeway_s: float,
    ) -> None:
        self._issuers = {i.issuer: i for i in issuers}
        self._keys: Mapping[str, SigningKeys] = {i.issuer: keys_for(i) for i in issuers}
        self._leeway = leeway_s

    @property
    def enabled(self) -> bool:
        return bool(self._issuers)

    def ready(self, token: str) -> bool:
        """Whether `verify` will answer without I/O (so it may run on the event loop)."""
        try:
            issuer, kid = self._issuer_and_kid(token)
        except TokenRejected:
            return True
        return self._keys[issuer.issuer].ready(kid)

    def verify(self, token: str) -> Caller:
        issuer, kid = self._issuer_and_kid(token)
        key = self._keys[issuer.issuer].get(kid)
        if key is None:
            raise TokenRejected(f"Token signed with a key ({_echo(kid)}) that the issuer's key set does not list.")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=list(issuer.audiences),
                issuer=issuer.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("Token expired.") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("Token not valid yet (nbf or iat in the future).") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected("Token audience (aud) not accepted here.") from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("Token issuer (iss) not trusted.") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("Token signature does not verify with the issuer's key.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"Token lacks the {exc.claim!r} claim.") from None
        except jwt.InvalidTokenError:
            raise TokenRejected("Token is malformed or invalid.") from None
        return self._caller(issuer, claims)

    def _issuer_and_kid(self, token: str) -> tuple[Issuer, str]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise TokenRejected("Token is malformed (not a JWT with a JSON header and claims).") from None
        alg = header.get("alg")
        if alg != ALGORITHM:  # `none` (unsigned) and HS256 (a public key used as an HMAC secret) among them
            raise TokenRejected(f"Token algorithm {_echo(alg)} not accepted: only {ALGORITHM}.")
        issuer = self._issuers.get(unverified.get("iss"))  # type: ignore[arg-type]
        if issuer is None:
            raise TokenRejected("Token issuer (iss) not trusted.")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("Token header has no key id (kid).")
        return issuer, kid

    def _caller(self, issuer: Issuer, claims: dict[str, Any]) -> Caller:
        value = claims.get(issuer.claim)
        if value is None and issuer.claim == "appid":
            value = claims.get("azp")  # the client app's id: `appid` in v1 tokens, `azp` in v2
        values = [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
        tenants = {issuer.tenants[v] for v in values if v in issuer.tenants}
        is_admin = any(v in issuer.admins for v in values)
        if len(tenants) > 1:
            raise TokenRejected(f"Token's {issuer.claim!r} maps to several tenants.")
        if not tenants and not is_admin:
            raise TokenRejected(f"Token's {issuer.claim!r} is not mapped to a tenant.")
        who = next((claims[c] for c in ("oid", "sub", "azp", "appid") if isinstance(claims.get(c), str)), values[0])
        return Caller(tenant=next(iter(tenants), ""), is_admin=is_admin, key_id=f"entra:{who}"[:256])
