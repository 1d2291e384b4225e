"""Who is calling: API keys and bearer tokens checked against the config's credentials, which follow the config
file while the process runs. A key created, revoked or given an expiry is seen within `config_reload_s` without a
restart; an edit the loader refuses keeps the last good credentials (and says why in the log)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shared.domain.auth import Caller, KeyDirectory, looks_like_jwt
from shared.domain.auth_config import Issuer
from shared.domain.config import AppConfig
from shared.domain.errors import AuthError, ConfigError
from shared.domain.tokens import SigningKeys, TokenVerifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConfigWatch:
    """Where the running config came from, so it can be read again when the file changes."""

    path: Path
    load: Callable[[], AppConfig]
    interval_s: float


class Credentials:
    def __init__(
        self,
        config: AppConfig,
        *,
        keys_for: Callable[[Issuer], SigningKeys],
        leeway_s: float,
        watch: ConfigWatch | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tenants = {t.name for t in config.tenants}  # those the running process serves (budgets, rates)
        self._keys_for = keys_for
        self._sources: dict[tuple[str, str], SigningKeys] = {}  # kept across reloads: their caches too
        self._leeway = leeway_s
        self._watch = watch
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._seen = self._stat()
        self._checked_at = monotonic()
        self._use(config)

    def authenticate(self, credential: str | None) -> Caller:
        self._reload_if_changed()
        directory, tokens = self._directory, self._tokens
        if credential and looks_like_jwt(credential) and tokens.enabled:
            return tokens.verify(credential)
        try:
            return directory.authenticate(credential)
        except AuthError:
            if credential and looks_like_jwt(credential):
                raise AuthError("Invalid API key (a JWT was sent, but no token issuers are configured).") from None
            raise

    def ready(self, credential: str | None) -> bool:
        """Whether `authenticate` will answer without I/O (a config check or a key set read): on the event loop."""
        if self._reload_due():
            return False
        return not (credential and looks_like_jwt(credential) and self._tokens.enabled) or self._tokens.ready(
            credential
        )

    # --- the config file -----------------------------------------------------------------------------------
    def _reload_due(self) -> bool:
        return self._watch is not None and self._monotonic() - self._checked_at >= self._watch.interval_s

    def _reload_if_changed(self) -> None:
        if not self._reload_due():
            return
        with self._lock:
            if not self._reload_due():
                return
            self._checked_at = self._monotonic()
            seen = self._stat()
            if seen == self._seen:
                return
            self._seen = seen
            assert self._watch is not None
            try:
                config = self._watch.load()
            except ConfigError as exc:
                log.warning("config changed but not applied (the last good credentials stay): %s", exc)
                return
            self._use(config)
            log.info("credentials reloaded from %s", self._watch.path)

    def _stat(self) -> tuple[int, int, int] | None:
        if self._watch is None:
            return None
        try:
            st = os.stat(self._watch.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _use(self, config: AppConfig) -> None:
        added = sorted(t.name for t in config.tenants if t.name not in self._tenants)
        if added:
            log.warning("tenants %s are new in the config: they are served after a restart", ", ".join(added))
            config = config.model_copy(update={"tenants": tuple(t for t in config.tenants if t.name in self._tenants)})
        issuers = [
            i.model_copy(update={"tenants": {v: t for v, t in i.tenants.items() if t in self._tenants}})
            for i in config.auth.issuers
        ]
        self._directory = KeyDirectory(config)
        self._tokens = TokenVerifier(issuers, self._source, self._leeway)

    def _source(self, issuer: Issuer) -> SigningKeys:
        key = (issuer.issuer, issuer.key_source)
        if key not in self._sources:
            self._sources[key] = self._keys_for(issuer)
        return self._sources[key]
