"""Model sources: a deployment's files from a local folder, verified by sha256 before they are used."""

from __future__ import annotations

import hashlib
from pathlib import Path

from shared.errors import ConfigError


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(folder: Path, files: dict[str, str]) -> Path:
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise ConfigError(f"model file missing: {path} (run 'make model')")
        actual = sha256_of(path)
        if actual != expected:
            raise ConfigError(f"model file {path} has sha256 {actual}, expected {expected}: refusing to load it")
    return folder


class LocalModelSource:
    """A path on disk, relative to the working directory or absolute."""

    def fetch(self, source: str, files: dict[str, str]) -> Path:
        return verify(Path(source), files)
