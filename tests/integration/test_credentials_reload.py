"""The running process follows the config file's credentials: a key revoked, created or given an expiry (with the
config_file functions `inferq keys` calls) takes effect at the next check, at most every `config_reload_s`; a
broken edit keeps the last good credentials and says why; a tenant new in the file waits for a restart."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.application import config_file
from shared.application.credentials import ConfigWatch, Credentials
from shared.domain.auth import hash_key
from shared.domain.config import load_config
from shared.domain.errors import AuthError
from tests.conftest import KEYS, write_config


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def credentials(path: Path, interval_s: float = 0, clock: Clock | None = None) -> Credentials:
    def no_key_sets(_: object) -> None:
        raise AssertionError("no issuer here")

    return Credentials(
        load_config(path),
        keys_for=no_key_sets,  # type: ignore[arg-type]
        leeway_s=0,
        watch=ConfigWatch(path, lambda: load_config(path), interval_s),
        monotonic=clock or Clock(),
    )


def test_revoked_created_and_expired_keys_take_effect_without_a_restart(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.toml")
    creds = credentials(path)
    assert creds.authenticate(KEYS["acme"]).tenant == "acme"

    config_file.revoke_key(path, "acme", key=KEYS["acme"])
    with pytest.raises(AuthError, match="Invalid API key"):
        creds.authenticate(KEYS["acme"])

    new = config_file.create_key(path, "acme", key_id="ci-2027", expires=datetime.now(UTC) + timedelta(days=1))
    assert creds.authenticate(new).key_id == "ci-2027"
    config_file.expire_key(path, "acme", "ci-2027", datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(AuthError, match=r"API key expired \(key id 'ci-2027'"):
        creds.authenticate(new)
    # A key of the plain `key_sha256` list, given an expiry (a rotation's grace period), lapses the same way.
    old_id = hash_key(KEYS["globex"])[:8]
    assert creds.authenticate(KEYS["globex"]).key_id == old_id
    config_file.expire_key(path, "globex", old_id, datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(AuthError, match="API key expired"):
        creds.authenticate(KEYS["globex"])


def test_the_file_is_checked_at_most_every_interval(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.toml")
    clock = Clock()
    creds = credentials(path, interval_s=5, clock=clock)
    config_file.revoke_key(path, "acme", key=KEYS["acme"])
    clock.now = 4.9
    assert creds.ready(KEYS["acme"]) and creds.authenticate(KEYS["acme"]).tenant == "acme"  # not checked yet
    clock.now = 5.0
    assert not creds.ready(KEYS["acme"])  # a check is due: the HTTP layer runs it off the event loop
    with pytest.raises(AuthError):
        creds.authenticate(KEYS["acme"])
    assert creds.ready(KEYS["globex"])


def test_a_broken_edit_keeps_the_last_good_credentials_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_config(tmp_path / "c.toml")
    creds = credentials(path)
    good = path.read_text()
    path.write_text(good.replace('currency = "USD"', "currency = ["))
    with caplog.at_level(logging.WARNING, "shared.application.credentials"):
        assert creds.authenticate(KEYS["acme"]).tenant == "acme"
    assert "not applied" in caplog.text and "not valid TOML" in caplog.text
    path.write_text(good.replace(hash_key(KEYS["acme"]), hash_key("acme-next")))  # fixed, and the key rotated
    assert creds.authenticate("acme-next").tenant == "acme"


def test_a_tenant_new_in_the_file_is_served_after_a_restart(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_config(tmp_path / "c.toml")
    creds = credentials(path)
    config_file.add_tenant(path, "initech")
    key = config_file.create_key(path, "initech")
    with caplog.at_level(logging.WARNING, "shared.application.credentials"), pytest.raises(AuthError):
        creds.authenticate(key)  # budgets and rate limits of this process know nothing of it
    assert "initech" in caplog.text and "restart" in caplog.text
    assert credentials(path).authenticate(key).tenant == "initech"  # a new process serves it
