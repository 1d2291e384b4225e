"""A blob store in memory, with the file store's key rules (so a key that works here works on disk)."""

from __future__ import annotations

import re
import threading

from shared.domain.errors import InvalidInput, NotFound

# `FileBlobStore`'s rule: path segments of safe characters, no `..`.
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.:-]+(/[A-Za-z0-9_.:-]+)*$")


class MemoryBlobStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blobs: dict[str, bytes] = {}

    def ping(self) -> None:
        """Memory always answers."""

    def put(self, key: str, data: bytes) -> None:
        _check(key)
        with self._lock:
            self._blobs[key] = bytes(data)  # a copy: the caller's buffer may change afterwards

    def get(self, key: str) -> bytes:
        _check(key)
        with self._lock:
            data = self._blobs.get(key)
        if data is None:
            raise NotFound(f"blob {key} not found")
        return data

    def delete(self, key: str) -> None:
        _check(key)
        with self._lock:
            self._blobs.pop(key, None)

    def list_keys(self, prefix: str, limit: int) -> list[str]:
        with self._lock:
            keys = [k for k in self._blobs if k.startswith(prefix)]
        return sorted(keys)[: max(limit, 0)]


def _check(key: str) -> None:
    if not _SAFE_KEY.match(key) or ".." in key:
        raise InvalidInput(f"invalid blob key {key!r}")
