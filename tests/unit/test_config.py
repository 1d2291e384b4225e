from pathlib import Path

import pytest

from shared.domain.auth import KeyDirectory, hash_key
from shared.domain.config import AppConfig, load_config
from shared.domain.errors import AuthError, ConfigError, NotFound
from tests.conftest import write_config


def test_the_example_config_is_valid() -> None:
    config = load_config(Path(__file__).parents[2] / "config" / "inferq.toml")
    assert config.default_deployment.dimensions == 384
    assert any(t.demo for t in config.tenants)


def test_model_names_match_case_insensitively(config: AppConfig) -> None:
    assert config.deployment("ALL-minilm-l6-V2").name == "all-MiniLM-L6-v2"
    with pytest.raises(NotFound):
        config.deployment("gpt-4")


def test_duplicate_names_are_refused_naming_the_field(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.toml", extra='[[tenants]]\nname = "ACME"\n')
    with pytest.raises(ConfigError, match="tenants: duplicate name 'ACME'"):
        load_config(path)


def test_an_unknown_field_or_bad_hash_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.toml", extra='[[tenants]]\nname = "x"\nkey_sha256 = ["not-a-hash"]\n')
    with pytest.raises(ConfigError, match=r"tenants\.2\.key_sha256\.0"):
        load_config(path)
    (tmp_path / "bad.toml").write_text("currency = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


def test_keys_map_to_tenants_and_only_hashes_are_kept(config: AppConfig) -> None:
    keys = KeyDirectory(config)
    assert keys.authenticate("acme-key").tenant == "acme"
    assert keys.authenticate("admin-key").is_admin
    assert "acme-key" not in config.model_dump_json()
    assert hash_key("acme-key") in config.model_dump_json()
    for bad in (None, "", "acme-key ", "nope"):
        with pytest.raises(AuthError):
            keys.authenticate(bad)
