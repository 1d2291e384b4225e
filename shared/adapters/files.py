"""A blob store on local files (claim-check payloads, large results)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from shared.domain.errors import InvalidInput, NotFound, StorageUnavailable

_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.:-]+(/[A-Za-z0-9_.:-]+)*$")


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not _SAFE_KEY.match(key) or ".." in key:
            raise InvalidInput(f"invalid blob key {key!r}")
        return self.root / key

    def ping(self) -> None:
        """Readiness: the folder is there and this process may write in it (a stat, no write)."""
        if not self.root.is_dir() or not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageUnavailable(f"blob folder {self.root} is missing or not writable")

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)  # readers never see half a blob
        except OSError as exc:  # disk full, read-only, a file where a folder should be
            raise StorageUnavailable(f"write blob {key}: {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"blob {key} not found") from exc
        except OSError as exc:
            raise StorageUnavailable(f"blob {key}: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"delete blob {key}: {exc}") from exc

    def list_keys(self, prefix: str, limit: int) -> list[str]:
        folder = self.root / prefix.rpartition("/")[0]  # walk only the prefix's folder, not every payload
        if not folder.is_dir():
            return []
        keys = (
            path.relative_to(self.root).as_posix()
            for path in folder.rglob("*")
            if path.is_file() and not path.name.endswith(".tmp")
        )
        return sorted(k for k in keys if k.startswith(prefix))[:limit]
