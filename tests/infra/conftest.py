"""Shared set-up of the infrastructure tests.

They import the app from the repository root (`shared.bindings`, `function_app`) and their helpers from this
directory (`bicep`), whatever pytest's import mode or rootdir.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]

for path in (str(REPO_ROOT), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

import bicep  # noqa: E402  (needs the path above)


@pytest.fixture(scope="session")
def templates() -> bicep.Templates:
    return bicep.Templates.load()


@pytest.fixture(scope="session")
def infra(templates: bicep.Templates) -> bicep.InfraNames:
    return bicep.InfraNames.load(templates)
