"""Endpoints in the config: implicit endpoints keep old configs working, and every invalid endpoint config is
refused at load with a message naming the field."""

import re
from pathlib import Path

import pytest

from shared.domain.config import load_config
from shared.domain.errors import ConfigError
from tests.conftest import MODEL_DIR, write_config


def deployment(name: str, kind: str = "embeddings") -> str:
    """A deployment on the real embedding model files (never loaded here: config only)."""
    return (
        f'[[deployments]]\nname = "{name}"\nkind = "{kind}"\nmodel_name = "m"\n'
        f'[deployments.model]\nsource = "{MODEL_DIR.as_posix()}"\nfiles = {{}}\n\n'
    )


BLUE_GREEN = deployment("minilm-blue") + deployment("minilm-green") + deployment("minilm-shadow")
VALID = '[[endpoints]]\nname = "embed"\ntraffic = { "minilm-blue" = 90, "minilm-green" = 10 }\n'


def config_with(tmp_path: Path, endpoints: str, deployments: str = BLUE_GREEN) -> Path:
    return write_config(tmp_path / "c.toml", after=deployments + endpoints)


def test_a_deployment_behind_no_endpoint_is_an_endpoint_of_its_own_name(tmp_path: Path) -> None:
    config = load_config(config_with(tmp_path, VALID + 'mirror = { "MINILM-shadow" = 20 }\n'))
    endpoints = {e.name: e for e in config.all_endpoints()}
    # The example's deployments stay endpoints of their own names, the default (first) one included.
    assert list(endpoints)[:4] == ["all-MiniLM-L6-v2", "tiny-random-chat", "smollm2-135m-instruct", "linear-scorer"]
    assert endpoints["all-MiniLM-L6-v2"].traffic == {"all-MiniLM-L6-v2": 100}
    embed = endpoints["embed"]
    assert embed.traffic == {"minilm-blue": 90, "minilm-green": 10}
    assert embed.mirror == {"minilm-shadow": 20}  # spelled as the deployment spells itself
    assert embed.deployment_names == ("minilm-blue", "minilm-green", "minilm-shadow")
    assert "minilm-blue" not in endpoints  # behind an endpoint: reached through it (and the header) only


def test_an_endpoint_may_share_its_name_with_one_of_its_own_deployments(tmp_path: Path) -> None:
    endpoints = '[[endpoints]]\nname = "Minilm-Blue"\ntraffic = { "minilm-blue" = 50, "minilm-green" = 50 }\n'
    names = [e.name for e in load_config(config_with(tmp_path, endpoints)).all_endpoints()]
    assert "Minilm-Blue" in names and "minilm-green" not in names


@pytest.mark.parametrize(
    ("endpoints", "deployments", "message"),
    [
        (
            '[[endpoints]]\nname = "embed"\ntraffic = { "minilm-blue" = 90, "minilm-green" = 5 }\n',
            BLUE_GREEN,
            r"endpoints\.0\.traffic: traffic weights must sum to 100; they sum to 95",
        ),
        (
            '[[endpoints]]\nname = "embed"\ntraffic = { "minilm-blue" = 150, "minilm-green" = -50 }\n',
            BLUE_GREEN,
            r"endpoints\.0\.traffic\.minilm-blue: Input should be less than or equal to 100",
        ),
        (
            VALID + 'mirror = { "minilm-nope" = 10 }\n',
            BLUE_GREEN,
            r"endpoints\.0\.mirror: unknown deployment 'minilm-nope' \(known: all-MiniLM-L6-v2, ",
        ),
        (
            '[[endpoints]]\nname = "embed"\ntraffic = { "minilm-blue" = 100, "nope" = 0 }\n',
            BLUE_GREEN,
            r"endpoints\.0\.traffic: unknown deployment 'nope'",
        ),
        (
            VALID + 'mirror = { "minilm-green" = 10 }\n',
            BLUE_GREEN,
            r"endpoints\.0\.mirror: 'minilm-green' takes live traffic; a mirror deployment must have 0 in traffic",
        ),
        (
            VALID + 'mirror = { "minilm-shadow" = 0 }\n',
            BLUE_GREEN,
            r"endpoints\.0\.mirror\.minilm-shadow: Input should be greater than or equal to 1",
        ),
        (
            VALID + VALID.replace('"embed"', '"EMBED"'),
            BLUE_GREEN,
            r"endpoints: duplicate name 'EMBED' \(names are case-insensitive\)",
        ),
        (
            "",
            BLUE_GREEN + deployment("MiniLM-Blue"),
            r"deployments: duplicate name 'MiniLM-Blue' \(names are case-insensitive\)",
        ),
        (
            '[[endpoints]]\nname = "embed"\ntraffic = { "minilm-blue" = 90, "MINILM-BLUE" = 10 }\n',
            BLUE_GREEN,
            r"endpoints\.0\.traffic: deployment 'MINILM-BLUE' is named twice \(names are case-insensitive\)",
        ),
        (
            VALID + '[[endpoints]]\nname = "other"\ntraffic = { "minilm-green" = 100 }\n',
            BLUE_GREEN,
            r"endpoints\.1\.traffic: deployment 'minilm-green' is already behind endpoint 'embed'",
        ),
        (
            '[[endpoints]]\nname = "minilm-shadow"\ntraffic = { "minilm-blue" = 100 }\n',
            BLUE_GREEN,
            r"endpoints\.0\.name: 'minilm-shadow' is the name of deployment 'minilm-shadow', which is not behind",
        ),
        (
            '[[endpoints]]\nname = "mixed"\ntraffic = { "minilm-blue" = 50, "tiny-random-chat" = 50 }\n',
            BLUE_GREEN,
            r"endpoints\.0: its deployments must be of one kind; found chat-completion, embeddings",
        ),
        ('[[endpoints]]\nname = "bad name!"\ntraffic = { "minilm-blue" = 100 }\n', BLUE_GREEN, r"endpoints\.0\.name"),
        ('[[endpoints]]\nname = "empty"\ntraffic = {}\n', BLUE_GREEN, r"endpoints\.0\.traffic"),
        ("", deployment("scorer", "score"), r"deployment 'scorer' of kind 'score' needs `script`"),
    ],
)
def test_an_invalid_endpoint_config_is_refused_naming_the_field(
    tmp_path: Path, endpoints: str, deployments: str, message: str
) -> None:
    path = config_with(tmp_path, endpoints, deployments)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: .*{message}"):
        load_config(path)
