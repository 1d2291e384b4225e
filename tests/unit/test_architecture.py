"""The architecture as tests: the import-linter contracts in pyproject.toml (one test each), and the rule that
only the registry and the config switch on a runner kind."""

from __future__ import annotations

import tomllib
from pathlib import Path

import importlinter.api  # noqa: F401  (importing the public API configures import-linter)
import pytest
from importlinter.application.use_cases import lint_imports

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
CONTRACTS = [c["id"] for c in tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]]
# Each kind of model is one module that owns what that kind means; nothing else switches on the kind. A kind's
# module names its own kind once (`kind = RunnerKind.CHAT`), which is a declaration, not a switch.
KIND_SWITCHERS = {"shared/runtimes/registry.py", "shared/domain/config.py"}
KIND_MODULES = {
    "shared/runtimes/embeddings.py",
    "shared/runtimes/chat.py",
    "shared/runtimes/score.py",
    "shared/runtimes/text_classifier.py",
    "shared/runtimes/image_embeddings.py",
}


def test_the_import_rules_are_configured() -> None:
    assert {"layers", "domain-is-pure", "adapters-via-bootstrap", "acyclic-siblings"} <= set(CONTRACTS)


@pytest.mark.parametrize("contract", CONTRACTS)
def test_an_import_contract_is_kept(contract: str, capsys: pytest.CaptureFixture[str]) -> None:
    kept = lint_imports(str(PYPROJECT), limit_to_contracts=(contract,), cache_dir=None, no_logo=True)
    assert kept, f"import contract {contract!r} is broken:\n{capsys.readouterr().out}"


def test_only_the_registry_and_the_config_name_a_runner_kind() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in ("shared", "functions")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.relative_to(ROOT).as_posix() not in KIND_SWITCHERS
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if "RunnerKind." in line
        and not (path.relative_to(ROOT).as_posix() in KIND_MODULES and line.strip().startswith("kind = RunnerKind."))
    ]
    assert not found, "switches on RunnerKind outside the registry:\n" + "\n".join(found)
