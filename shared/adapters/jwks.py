"""An issuer's signing keys from its JWKS: over HTTP (`jwks_uri`, or the `jwks_uri` of its OIDC metadata) or
from a file. Cached for `cache_s`; a kid not in the cache re-reads the set, but at most every `refresh_min_s`
(tokens with made-up kids must not hammer the issuer). A failed read keeps the keys read before."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt

from shared.domain.auth_config import Issuer
from shared.domain.errors import StorageUnavailable

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 1024 * 1024  # a key set is a few KiB; what is past this is not read


class JwksKeys:
    def __init__(
        self,
        read: Callable[[], dict[str, Any]],
        *,
        name: str,
        cache_s: float,
        refresh_min_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read, self._name = read, name
        self._cache_s, self._refresh_min_s = cache_s, refresh_min_s
        self._monotonic = monotonic
        self._keys: dict[str, Any] = {}
        self._read_at: float | None = None  # last successful read
        self._tried_at: float | None = None  # last attempt, successful or not
        self._lock = threading.Lock()

    def ready(self, kid: str) -> bool:
        return not self._due(kid)

    def get(self, kid: str) -> Any | None:
        if self._due(kid):
            with self._lock:  # one read at a time; the others find its result
                if self._due(kid):
                    self._refresh()
        if not self._keys and self._read_at is None:
            raise StorageUnavailable(f"The signing keys of token issuer {self._name} could not be read yet.")
        return self._keys.get(kid)

    def _due(self, kid: str) -> bool:
        now = self._monotonic()
        if self._tried_at is not None and now - self._tried_at < self._refresh_min_s:
            return False  # read (or tried) just now: neither stale nor a kid is worth another read yet
        stale = self._read_at is None or now - self._read_at >= self._cache_s
        return stale or kid not in self._keys

    def _refresh(self) -> None:
        self._tried_at = self._monotonic()
        try:
            document = self._read()
            keys = _signing_keys(document)
        except (OSError, ValueError, jwt.PyJWTError) as exc:  # URLError and HTTPError are OSErrors
            log.warning("signing keys of %s not read (keeping %d known): %s", self._name, len(self._keys), exc)
            return
        self._keys, self._read_at = keys, self._tried_at


def _signing_keys(document: dict[str, Any]) -> dict[str, Any]:
    """kid → public key, for the RSA signing keys of a JWKS document (others are skipped)."""
    found: dict[str, Any] = {}
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise ValueError("not a JWKS document (no `keys` list)")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        if isinstance(kid, str):
            found[kid] = jwt.PyJWK(entry, algorithm="RS256").key
    return found


def signing_keys(issuer: Issuer, *, cache_s: float, refresh_min_s: float, timeout_s: float) -> JwksKeys:
    """The key source an issuer names (a relative `jwks_file` from the working directory, as model sources)."""
    if issuer.jwks_file is not None:
        path = Path(issuer.jwks_file)
        return JwksKeys(
            lambda: _json(path.read_text(encoding="utf-8")),
            name=str(path),
            cache_s=cache_s,
            refresh_min_s=min(refresh_min_s, 1.0),  # a local file is cheap to read again
        )

    def get(url: str) -> dict[str, Any]:  # the standard library's client: the package needs nothing more
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"{url}: not an http(s) URL")
        request = urllib.request.Request(url, headers={"accept": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return _json(response.read(MAX_DOCUMENT_BYTES).decode("utf-8"))

    def fetch() -> dict[str, Any]:
        uri = issuer.jwks_uri
        if uri is None:
            uri = get(issuer.metadata_url or "").get("jwks_uri")
            if not isinstance(uri, str):
                raise ValueError(f"{issuer.metadata_url}: no jwks_uri in the OIDC metadata")
        return get(uri)

    return JwksKeys(fetch, name=issuer.key_source, cache_s=cache_s, refresh_min_s=refresh_min_s)


def _json(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value
