"""Unit tests do no I/O: building the app here may not open SQLite, a file blob store or a model source (what
`bootstrap` does only when an adapter or the registry is not passed in)."""

from __future__ import annotations

from typing import Any

import pytest

import shared.bootstrap


class DiskTouched(AssertionError):
    pass


def _refuse(what: str) -> Any:
    def build(*args: Any, **kwargs: Any) -> Any:
        raise DiskTouched(f"a unit test built {what}: pass an in-memory adapter instead")

    return build


@pytest.fixture(autouse=True)
def no_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared.bootstrap, "SqliteDatabase", _refuse("the SQLite database (Settings.db_path)"))
    monkeypatch.setattr(shared.bootstrap, "FileBlobStore", _refuse("the file blob store"))
    monkeypatch.setattr(shared.bootstrap.ModelSources, "from_settings", _refuse("the model sources"))
