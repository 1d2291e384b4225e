"""API keys with ids and expiry: the old `key_sha256` list and `[[tenants.keys]]` side by side, an expired key
refused saying so, ids unique, a key never shared by two tenants; usage events name the key id and old events
without one still parse. Issuer blocks are checked at load."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.domain.auth import KeyDirectory, hash_key, looks_like_jwt
from shared.domain.config import load_config
from shared.domain.errors import AuthError, ConfigError
from shared.schemas.usage import UsageEvent
from tests.conftest import KEYS, write_config

RICH = f"""[[tenants]]
name = "initech"
key_sha256 = ["{hash_key("plain")}"]

[[tenants.keys]]
id = "ci-2026"
sha256 = "{hash_key("ci")}"
expires = 2026-07-01T00:00:00Z

[[tenants.keys]]
sha256 = "{hash_key("forever")}"

[[tenants.keys]]
id = "rfc3339-string"
sha256 = "{hash_key("string")}"
expires = "2026-07-01T02:00:00+02:00"
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_keys_of_both_forms_have_ids_and_expire(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "c.toml", extra=RICH))
    before = KeyDirectory(config, clock=lambda: at("2026-06-30T23:59:59Z"))
    assert before.authenticate("plain").key_id == hash_key("plain")[:8]
    assert before.authenticate("ci").key_id == "ci-2026"
    assert before.authenticate("forever").key_id == hash_key("forever")[:8]
    assert before.authenticate("string").tenant == "initech"
    assert before.authenticate(KEYS["acme"]).tenant == "acme"  # the old form, as it was

    after = KeyDirectory(config, clock=lambda: at("2026-07-01T00:00:00Z"))
    for key, key_id in (("ci", "ci-2026"), ("string", "rfc3339-string")):
        with pytest.raises(AuthError, match=rf"API key expired \(key id '{key_id}', expired 2026-07-01T0"):
            after.authenticate(key)
    assert after.authenticate("forever").tenant == after.authenticate("plain").tenant == "initech"
    with pytest.raises(AuthError, match="Invalid API key"):
        after.authenticate("never-issued")


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (RICH.replace('id = "rfc3339-string"', 'id = "ci-2026"'), "key id 'ci-2026' is used twice"),
        (RICH.replace("2026-07-01T00:00:00Z", "2026-07-01T00:00:00"), "timezone"),
        (RICH.replace(hash_key("plain"), hash_key(KEYS["acme"])), "share a key"),
        (
            '[[auth.issuers]]\nissuer = "https://sts.example/"\naudiences = ["api://x"]\njwks_file = "k.json"\n'
            'tenants = { "oid-1" = "nobody" }\n',
            "maps to unknown tenant 'nobody'",
        ),
        (
            '[[auth.issuers]]\nissuer = "https://sts.example/"\naudiences = ["api://x"]\n',
            "give one of metadata_url, jwks_uri or jwks_file",
        ),
    ],
)
def test_bad_credentials_config_names_the_problem(tmp_path: Path, extra: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load_config(write_config(tmp_path / "c.toml", extra=extra))


def test_a_jwt_is_told_from_a_key_by_its_shape() -> None:
    assert looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl")
    assert looks_like_jwt("eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.")  # unsigned: still a token, refused as one
    for key in ("iq-AbC_dEf-123", "acme-key", "a.b", "a.b.c.d", "a b.c.d"):
        assert not looks_like_jwt(key)


def test_usage_events_name_the_key_id_and_old_events_still_parse() -> None:
    old = (
        '{"id": "job_1:input_tokens", "tenant": "acme", "endpoint": "e", "deployment": "d", "model": "m",'
        ' "meter": "input_tokens", "tokens": 3, "time": "2026-01-01T00:00:00Z", "job_id": "job_1"}'
    )
    event = UsageEvent.model_validate_json(old)
    assert event.key_id == ""
    named = UsageEvent.model_validate_json(old[:-1] + ', "key_id": "ci-2026"}')
    assert named.key_id == "ci-2026" and "ci-2026" in named.model_dump_json()
