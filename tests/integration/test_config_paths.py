"""Local files under abuse: every file of a deployment resolves inside its declared folder (no `..`, no absolute
name, no symlink out), whatever its sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from shared.adapters.model_source import ModelSources, sha256_of
from shared.domain.config import load_config
from shared.domain.errors import ConfigError
from tests.conftest import APPENDED, write_config

ANY = "0" * 64


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def table(source: Path | str, files: dict[str, str]) -> str:
    """A `[deployments.model]` body."""
    listed = ", ".join(f'"{name}" = "{digest}"' for name, digest in files.items())
    return f'source = "{source}"\nfiles = {{ {listed} }}'


def embedder(model: str) -> str:
    return f'[[deployments]]\nname = "probe"\nkind = "embeddings"\nmodel_name = "p"\n[deployments.model]\n{model}\n'


@pytest.mark.parametrize("name", ["../../etc/hostname", "/etc/hostname", "sub/../../x", "..", "a\\\\..\\\\..\\\\x", ""])
def test_a_file_name_that_leaves_its_folder_is_refused_by_the_config(tmp_path: Path, name: str) -> None:
    deployment = embedder(table("config/demo/scoring/model", {name: ANY}))
    with pytest.raises(
        ConfigError, match=rf"deployments\.{APPENDED}\.model\.files: .* must be a relative path inside its"
    ):
        load_config(write_config(tmp_path / "c.toml", after=deployment))


@pytest.mark.parametrize("name", ["../outside.txt", "/ABSOLUTE", "sub/../../outside.txt", "link.txt", "sub/link.txt"])
def test_a_local_file_that_resolves_outside_its_folder_is_refused_even_with_the_right_sha256(
    tmp_path: Path, name: str
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("the host's secret file")
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "link.txt").symlink_to(outside)  # inside by name, outside on disk
    (folder / "sub" / "link.txt").symlink_to("../../outside.txt")
    name = name.replace("/ABSOLUTE", str(outside))
    models = ModelSources(tmp_path / "cache", {})
    with pytest.raises(ConfigError, match="inside its folder|outside its folder"):
        models.fetch(str(folder), {name: sha256_of(outside)})


def test_a_symlink_that_stays_inside_its_folder_is_a_file_like_any_other(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    (folder / "v1").mkdir(parents=True)
    (folder / "v1" / "weights.json").write_text("{}")
    (folder / "weights.json").symlink_to("v1/weights.json")
    assert ModelSources(tmp_path / "cache", {}).fetch(str(folder), {"weights.json": sha("{}")}) == folder
