"""Operators' edits of the config file (`inferq keys`): a tenant's API keys added or revoked in place (a running
host sees them within INFERQ_CONFIG_RELOAD_S).

The TOML is edited with tomlkit, so comments and layout survive; every edit is checked by the product's own
loader (`load_config`) before it replaces the file, so an edit never leaves a config the host would refuse.
Keys are kept only as sha256 hashes: a new key is returned once, to be shown once, and never written."""

from __future__ import annotations

import os
import secrets
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Array

from shared.domain.auth import hash_key
from shared.domain.auth_config import ApiKey
from shared.domain.config import AppConfig, load_config
from shared.domain.errors import ConfigError, InvalidInput, NotFound

KEY_PREFIX = "iq-"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(24)


def create_key(path: Path, tenant: str, *, key_id: str | None = None, expires: datetime | None = None) -> str:
    """A new key for `tenant`, the key itself returned. Without an id or expiry its sha256 joins the tenant's
    `key_sha256`; with either, it is a `[[tenants.keys]]` entry (id, sha256, expires)."""
    key = new_key()
    digest = hash_key(key)

    def add(entry: Any) -> None:
        if key_id is None and expires is None:
            _array(entry, "key_sha256").append(digest)
            return
        fields: dict[str, Any] = {"id": key_id or digest[:8], "sha256": digest}
        if expires is not None:
            fields["expires"] = expires
        _append_key(entry, fields)

    _edit_tenant(path, tenant, add)
    return key


def revoke_key(
    path: Path, tenant: str, *, key: str | None = None, sha256: str | None = None, key_id: str | None = None
) -> str:
    """Remove a key of `tenant` (given in clear, by its sha256 or by its id); the id of the key removed."""
    if sum(v is not None for v in (key, sha256, key_id)) != 1:
        raise InvalidInput("Give the key, its sha256 or its id (one of them).", loc=("key",), input=None)
    digest = hash_key(key) if key is not None else (sha256 or "").lower() or None
    removed: list[str] = []

    def matches(hash_: str, id_: str) -> bool:
        return hash_ == digest if digest is not None else id_ == key_id

    def remove(entry: Any) -> None:
        plain, rich = entry.get("key_sha256"), entry.get("keys")
        for i in reversed(range(len(plain or []))):
            if matches(str(plain[i]), str(plain[i])[:8]):
                removed.append(str(plain[i])[:8])
                del plain[i]
        for i in reversed(range(len(rich or []))):
            found = ApiKey.model_validate(rich[i].unwrap())
            if matches(found.sha256, found.key_id):
                removed.append(found.key_id)
                del rich[i]
        if not removed:
            which = f"sha256 {digest}" if digest is not None else f"id {key_id!r}"
            raise NotFound(f"Tenant {tenant!r} has no key with {which}.")

    _edit_tenant(path, tenant, remove)
    return removed[0]


def expire_key(path: Path, tenant: str, key_id: str, expires: datetime) -> None:
    """Give a key of `tenant` (by id) an expiry: after a rotation, the old key keeps working until then. A key of
    `key_sha256` becomes a `keys` entry to carry it."""

    def expire(entry: Any) -> None:
        for item in entry.get("keys") or []:
            if ApiKey.model_validate(item.unwrap()).key_id == key_id:
                item["expires"] = expires
                return
        plain = entry.get("key_sha256") or []
        digest = next((str(h) for h in plain if str(h)[:8] == key_id), None)
        if digest is None:
            raise NotFound(f"Tenant {tenant!r} has no key with id {key_id!r}.")
        del plain[[str(h) for h in plain].index(digest)]
        _append_key(entry, {"id": key_id, "sha256": digest, "expires": expires})

    _edit_tenant(path, tenant, expire)


def parse_expiry(text: str) -> datetime:
    """An RFC 3339 time with its offset (`2027-01-01T00:00:00Z`), as `--expires` takes it."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise InvalidInput(
            f"{text!r} is not an RFC 3339 time with an offset, e.g. 2027-01-01T00:00:00Z", loc=("expires",), input=text
        )
    return when


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


def _edit_tenant(path: Path, tenant: str, change: Any) -> None:
    load_config(path)  # a broken file is reported as the host would report it, before any edit
    document = tomlkit.parse(path.read_text(encoding="utf-8"))
    tenants = document.get("tenants")
    entry = next((t for t in tenants if t.get("name") == tenant), None) if isinstance(tenants, AoT) else None
    if entry is None:
        raise NotFound(f"{path}: no tenant {tenant!r}.")
    change(entry)
    write_checked(path, tomlkit.dumps(document))


def _append_key(entry: Any, fields: dict[str, Any]) -> None:
    """A `keys` entry: a table where they are written `[[tenants.keys]]`, else an inline table in `keys = [...]`."""
    keys = entry.get("keys")
    if isinstance(keys, AoT):
        table = tomlkit.table()
        table.update(fields)
        keys.append(table)
        return
    if keys is None:
        keys = entry["keys"] = tomlkit.array()
        keys.multiline(True)
    inline = tomlkit.inline_table()
    inline.update(fields)
    keys.append(inline)


def _array(entry: Any, name: str) -> Array:
    if entry.get(name) is None:
        entry[name] = tomlkit.array()
    array: Array = entry[name]
    return array


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
