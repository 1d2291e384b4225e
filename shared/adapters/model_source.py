"""Model sources: a deployment's files from a local folder, an Azure Blob URL or `s3://`, each verified by sha256.

Remote files are downloaded once per version into a cache under `models_dir` (`.cache/<digest of the sha256s>/`):
a cold worker downloads them once, a warm one finds them. A version's folder appears only whole and verified
(written beside it, then renamed), so a wrong sha256 or a failed download leaves nothing half-written behind;
a cached version is verified again before it is served, and fetched anew if it was damaged since.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from shared.domain.config import check_file_name
from shared.domain.errors import ConfigError, ModelNotBuilt
from shared.settings import Settings

CACHE_DIR = ".cache"
# The one folder `make model` (scripts/fetch_model.py) fills; every other model folder is the deployer's to provide.
FETCHED_MODEL_FOLDER = ("models", "all-MiniLM-L6-v2-int8")
# Folders built on this machine, pinned by their build's manifest (`ModelSpec.manifest`), and what builds them.
BUILT_BY: dict[tuple[str, ...], str] = {("models", "smollm2-135m-instruct-int4"): "make chat-model"}
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(folder: Path, files: dict[str, str], what: str = "model") -> Path:
    for name, expected in files.items():
        path = inside(folder, name)
        if not path.is_file():
            raise missing_file(folder, name, what)
        actual = sha256_of(path)
        if actual != expected:
            raise ConfigError(f"{what} file {path} has sha256 {actual}, expected {expected}: refusing to load it")
    return folder


def inside(folder: Path, name: str) -> Path:
    """`folder / name`, refused unless it stays inside the folder: no `..`, no absolute name, no symlink out."""
    try:
        check_file_name(name)
    except ValueError as exc:
        raise ConfigError(f"{folder}: {exc}") from None
    path = folder / name
    root = folder.resolve()
    if not path.resolve().is_relative_to(root):
        raise ConfigError(f"{path} resolves to {path.resolve()}, outside its folder {root}: refusing to load it")
    return path


def missing_file(folder: Path, name: str, what: str = "model") -> ConfigError:
    """What is missing, from which folder, and what puts it there: `make model` only for the folder it fills."""
    path = folder / name
    if what == "model" and folder.parts[-2:] == FETCHED_MODEL_FOLDER:
        return ConfigError(
            f"model file missing: {path}: the default embeddings model is fetched by 'make model'; run it "
            "(before deploying, so the package includes it)"
        )
    where = folder.resolve()
    why = f"the folder {where} has no {name}" if folder.is_dir() else f"the folder {where} does not exist"
    return ConfigError(
        f"{what} file missing: {path}: {why}. Every file in a deployment's {what}.files must be in its {what}.source "
        "folder, and a deployed package must include it (not under tests/, not left out by .funcignore)"
    )


class RemoteFiles(Protocol):
    def download(self, source: str, name: str, dest: Path) -> None:
        """Write file `name` under `source` to `dest`; ConfigError if it is not there."""
        ...


def source_kind(source: str) -> str:
    if source.startswith("s3://"):
        return "s3"
    if source.startswith(("https://", "http://")):
        return "blob"  # Azure Blob: <account>.blob.core.windows.net, or Azurite's path-style URL
    return "local"


def version_key(files: dict[str, str]) -> str:
    """The cache folder of a set of files: their names and sha256s, not where they came from."""
    listing = "\n".join(f"{name}\t{sha}" for name, sha in sorted(files.items()))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()[:32]


class ModelSources:
    """The ModelSource every backend uses: local folders in place, remote ones through the download cache."""

    def __init__(self, cache_dir: Path, remotes: dict[str, Callable[[], RemoteFiles]]) -> None:
        self.cache_dir = cache_dir
        self._remotes = remotes
        self._built: dict[str, RemoteFiles] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelSources:
        def blob() -> RemoteFiles:
            from shared.adapters.azure.model_files import BlobModelFiles  # the SDKs load only if a model needs them

            return BlobModelFiles.from_settings(settings)

        def s3() -> RemoteFiles:
            from shared.adapters.s3 import S3ModelFiles

            return S3ModelFiles(settings.s3_endpoint_url, settings.s3_region)

        return cls(settings.models_dir / CACHE_DIR, {"blob": blob, "s3": s3})

    def manifest(self, source: str, name: str) -> dict[str, str]:
        folder = Path(source)
        path = inside(folder, name)
        if not path.is_file():
            command = BUILT_BY.get(folder.parts[-2:])
            how = f"run '{command}' to build it" if command else "build it first"
            raise ModelNotBuilt(f"the model is not built: {path} is missing; {how}")
        try:
            files = json.loads(path.read_text(encoding="utf-8"))["files"]
            if not files or not all(isinstance(s, str) and SHA256.match(s) for s in files.values()):
                raise ValueError("`files` must map each file name to its sha256")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not a model manifest ({exc})") from exc
        for file in files:
            inside(folder, file)
        return dict(files)

    def fetch(self, source: str, files: dict[str, str], what: str = "model") -> Path:
        kind = source_kind(source)
        if kind == "local":
            return verify(Path(source), files, what)
        for name in files:
            inside(self.cache_dir, name)
        folder = self.cache_dir / version_key(files)
        if folder.is_dir():
            if _intact(folder, files):
                return folder
            _discard(folder)  # damaged since it was cached (a tmp cleaner, a bad disk): never serve it, fetch again
        remote = self._remote(kind)
        partial = self.cache_dir / f".partial-{uuid.uuid4().hex}"
        try:
            for name, expected in files.items():
                dest = partial / name
                try:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise ConfigError(
                        f"cannot cache model files under {self.cache_dir} ({exc.strerror or exc}): set "
                        "INFERQ_MODELS_DIR to a writable folder (on Azure the app package is read-only)"
                    ) from exc
                remote.download(source, name, dest)
                actual = sha256_of(dest)
                if actual != expected:
                    raise ConfigError(
                        f"{what} file {name} from {_redacted(source)} has sha256 {actual}, expected {expected}: "
                        "refusing it (nothing was cached)"
                    )
            try:
                os.rename(partial, folder)
            except OSError:
                if not folder.is_dir():  # another worker finished the same version first: use theirs
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return folder

    def _remote(self, kind: str) -> RemoteFiles:
        if kind not in self._built:
            self._built[kind] = self._remotes[kind]()
        return self._built[kind]


def _intact(folder: Path, files: dict[str, str]) -> bool:
    try:
        verify(folder, files)
    except ConfigError:
        return False
    return True


def _discard(folder: Path) -> None:
    """Move a damaged version aside (atomic: no worker sees it half-deleted), then delete it."""
    stale = folder.with_name(f".stale-{uuid.uuid4().hex}")
    try:
        os.rename(folder, stale)
    except OSError:
        return  # another worker moved it first
    shutil.rmtree(stale, ignore_errors=True)


def _redacted(source: str) -> str:
    return source.split("?", 1)[0]  # a SAS token stays out of messages and logs
