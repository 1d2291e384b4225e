"""`.funcignore` read the way Functions Core Tools reads it (anchored prefix regexes) and the way git rules read it
(azd); the package keeps a file only if both do."""

from __future__ import annotations

import pytest

from tests.deploy_package import FuncIgnore

RULES = FuncIgnore(
    "# comment\n.git*\n.venv/\n__pycache__/\ntests/\n/data/\nMakefile\n*.log\nkeep/*\n!keep/this.txt\n  \n"
)


@pytest.mark.parametrize(
    ("path", "core_tools", "git"),
    [
        ("shared/app.py", True, True),
        (".gitignore", False, False),  # always left out by Core Tools; `.git*` for git
        (".github/workflows/ci.yml", False, False),
        (".venv/bin/python", False, False),
        ("__pycache__/x.pyc", False, False),
        ("shared/__pycache__/x.pyc", True, False),  # Core Tools anchors every pattern at the root
        ("tests/conftest.py", False, False),
        ("functions/tests/x.py", True, False),
        ("data/inferq.sqlite3", False, False),
        ("config/data/x.json", True, True),  # `/data/` is anchored for both
        ("Makefile", False, False),
        ("Makefile.bak", False, True),  # Core Tools matches a prefix
        ("host.log", False, False),
        ("logs/host.log", True, False),  # `*` is one name: Core Tools only at the root
        ("keep/other.txt", False, False),
        ("keep/this.txt", True, True),  # re-included
        ("local.settings.json", False, True),  # always left out by Core Tools
        ("a/.vscode/settings.json", False, True),
    ],
)
def test_both_readings(path: str, core_tools: bool, git: bool) -> None:
    assert RULES.core_tools_keeps(path) is core_tools
    assert RULES.git_keeps(path) is git
    assert RULES.keeps(path) is (core_tools and git)


def test_a_file_in_an_ignored_folder_stays_out_for_git_even_if_re_included() -> None:
    rules = FuncIgnore("build/\n!build/keep.txt\n")
    assert not rules.git_keeps("build/keep.txt")
    assert rules.core_tools_keeps("build/keep.txt")  # Core Tools checks each file on its own


def test_the_walk_skips_only_folders_nothing_can_come_back_from() -> None:
    assert not RULES.keeps_folder("tests")
    assert not RULES.keeps_folder("shared/__pycache__")  # git drops it whole
    assert RULES.keeps_folder("shared")
    assert RULES.keeps_folder("keep")
    assert FuncIgnore("build/\n!build/keep.txt\n").keeps_folder("build") is False  # git can't re-include there
    assert FuncIgnore("*.log\n").keeps_folder("logs")


def test_no_funcignore_keeps_everything() -> None:
    rules = FuncIgnore("")
    assert rules.keeps("tests/conftest.py") and rules.keeps_folder("tests")
    assert not rules.keeps("local.settings.json")
