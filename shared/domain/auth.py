"""Credentials → callers. API keys are compared as sha256 hashes, in constant time per candidate; each has an id
(named in usage records, never the key) and may expire. Bearer JWTs are told from keys by their shape and checked
by `shared.domain.tokens`."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from shared.domain.config import AppConfig
from shared.domain.errors import AuthError
from shared.domain.jobs import utcnow

# Three base64url segments (the signature may be empty: an unsigned token, refused as such). Keys made by
# `inferq keys create` have no dots.
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def looks_like_jwt(credential: str) -> bool:
    return _JWT.match(credential) is not None


@dataclass(frozen=True)
class Caller:
    tenant: str
    is_admin: bool = False
    key_id: str = ""  # which credential: a key's id, or `entra:<object id>` for a token (usage records name it)


@dataclass(frozen=True)
class _Entry:
    sha256: str
    tenant: str
    key_id: str
    expires: datetime | None


class KeyDirectory:
    def __init__(self, config: AppConfig, clock: Callable[[], datetime] = utcnow) -> None:
        self._entries = [_Entry(k.sha256, t.name, k.key_id, k.expires) for t in config.tenants for k in t.api_keys]
        self._admin = list(config.admin_key_sha256)
        self._clock = clock

    def authenticate(self, key: str | None) -> Caller:
        if not key:
            raise AuthError("Missing API key: send 'api-key: <key>' or 'Authorization: Bearer <key>'.")
        digest = hash_key(key)
        found: _Entry | None = None
        # Compare against every entry so timing does not reveal which one matched.
        for entry in self._entries:
            if hmac.compare_digest(entry.sha256, digest):
                found = entry
        is_admin = any(hmac.compare_digest(candidate, digest) for candidate in self._admin)
        if found is not None and found.expires is not None and found.expires <= self._clock():
            raise AuthError(f"API key expired (key id {found.key_id!r}, expired {found.expires.isoformat()}).")
        if found is None and not is_admin:
            raise AuthError("Invalid API key.")
        if found is None:  # an admin key: named by its sha256's start, as keys of `key_sha256` are
            return Caller(tenant="", is_admin=True, key_id=digest[:8])
        return Caller(tenant=found.tenant, is_admin=is_admin, key_id=found.key_id)
