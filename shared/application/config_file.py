"""Operators' edits of the config file (`inferq keys`): a tenant's API keys added or revoked in place.

The TOML is edited with tomlkit, so comments and layout survive; every edit is checked by the product's own
loader (`load_config`) before it replaces the file, so an edit never leaves a config the host would refuse.
Keys are kept only as sha256 hashes: a new key is returned once, to be shown once, and never written."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Array

from shared.domain.auth import hash_key
from shared.domain.config import AppConfig, load_config
from shared.domain.errors import ConfigError, InvalidInput, NotFound

KEY_PREFIX = "iq-"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(24)


def create_key(path: Path, tenant: str) -> str:
    """A new key for `tenant`: its sha256 added to the tenant's `key_sha256`; the key itself is returned."""
    key = new_key()
    digest = hash_key(key)

    def add(keys: Array) -> None:
        keys.append(digest)

    _edit_keys(path, tenant, add)
    return key


def revoke_key(path: Path, tenant: str, *, key: str | None = None, sha256: str | None = None) -> str:
    """Remove a key (given in clear or as its sha256) from `tenant`'s `key_sha256`; the hash removed."""
    if (key is None) == (sha256 is None):
        raise InvalidInput("Give the key or its sha256 (one of them).", loc=("key",), input=None)
    digest = hash_key(key) if key is not None else str(sha256).lower()

    def remove(keys: Array) -> None:
        at = [i for i, value in enumerate(keys) if str(value) == digest]
        if not at:
            raise NotFound(f"Tenant {tenant!r} has no key with sha256 {digest}.")
        for i in reversed(at):
            del keys[i]

    _edit_keys(path, tenant, remove)
    return digest


def add_tenant(
    path: Path,
    name: str,
    *,
    monthly_budget: str | None = None,
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
) -> AppConfig:
    """Append a `[[tenants]]` table (no keys yet: `create_key` adds them); the loader checks name and limits."""
    config = load_config(path)
    if any(t.name.lower() == name.lower() for t in config.tenants):
        raise InvalidInput(f"{path}: tenant {name!r} exists already.", loc=("tenant",), input=name)
    document = tomlkit.parse(path.read_text(encoding="utf-8"))
    tenants = document.get("tenants")
    if not isinstance(tenants, AoT):
        raise ConfigError(f"{path}: `tenants` must be written as [[tenants]] tables to add one here")
    table = tomlkit.table()
    table.trivia.indent = "\n"  # a blank line before it, as between the example's tables
    table["name"] = name
    table["key_sha256"] = tomlkit.array()
    if monthly_budget is not None:
        table["monthly_budget"] = monthly_budget  # a string: Decimal, exact, as the example config writes money
    if requests_per_minute is not None:
        table["requests_per_minute"] = requests_per_minute
    if tokens_per_minute is not None:
        table["tokens_per_minute"] = tokens_per_minute
    tenants.append(table)
    return write_checked(path, tomlkit.dumps(document))


def _edit_keys(path: Path, tenant: str, change: Any) -> None:
    load_config(path)  # a broken file is reported as the host would report it, before any edit
    document = tomlkit.parse(path.read_text(encoding="utf-8"))
    tenants = document.get("tenants")
    entry = next((t for t in tenants if t.get("name") == tenant), None) if isinstance(tenants, AoT) else None
    if entry is None:
        raise NotFound(f"{path}: no tenant {tenant!r}.")
    keys = entry.get("key_sha256")
    if keys is None:
        keys = tomlkit.array()
        entry["key_sha256"] = keys
    change(keys)
    write_checked(path, tomlkit.dumps(document))


def write_checked(path: Path, text: str) -> AppConfig:
    """Replace `path` with `text` once the loader accepts it (atomically: a reader sees the old or the new)."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        try:
            config = load_config(Path(temp))
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(temp, str(path))) from None
        os.replace(temp, path)
        return config
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
