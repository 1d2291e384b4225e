"""API keys → tenants. Keys are compared as sha256 hashes, in constant time per candidate."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from shared.domain.config import AppConfig
from shared.domain.errors import AuthError


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Caller:
    tenant: str
    is_admin: bool = False


class KeyDirectory:
    def __init__(self, config: AppConfig) -> None:
        self._entries = [(h, t.name) for t in config.tenants for h in t.key_sha256]
        self._admin = list(config.admin_key_sha256)

    def authenticate(self, key: str | None) -> Caller:
        if not key:
            raise AuthError("Missing API key: send 'api-key: <key>' or 'Authorization: Bearer <key>'.")
        digest = hash_key(key)
        tenant: str | None = None
        # Compare against every entry so timing does not reveal which one matched.
        for candidate, name in self._entries:
            if hmac.compare_digest(candidate, digest):
                tenant = name
        is_admin = any(hmac.compare_digest(candidate, digest) for candidate in self._admin)
        if tenant is None and not is_admin:
            raise AuthError("Invalid API key.")
        return Caller(tenant=tenant or "", is_admin=is_admin)
