"""The deployment package as Azure builds it: the project folder minus what `.funcignore` leaves out.

Two tools build it and read the file differently. Functions Core Tools (`func azure functionapp publish`) keeps a
file unless a pattern matches its relative path as a regex anchored at the start only (its `GitIgnoreParser`, a
port of codemix's gitignore-parser: `*` is one or more characters other than `/`, `**` anything, `?` and `[` are
literal, `!` re-includes), and always leaves out `.git`/`.vscode` folders and `.funcignore`, `.gitignore`,
`local.settings.json`, `project.lock.json`. azd reads it with git's rules (a pattern without a slash matches a
name at any depth, a trailing slash only folders, an ignored folder hides everything in it). A file is in the
package here only if both keep it, so what the config needs is shipped whichever tool deploys.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

# Never part of a package, whatever .funcignore says: the worktree's own tooling (Core Tools drops .git too).
ALWAYS_SKIPPED = frozenset({".git", ".venv", "node_modules"})
CORE_TOOLS_SKIPPED_DIRS = frozenset({".git", ".vscode"})
CORE_TOOLS_SKIPPED_FILES = frozenset({".funcignore", ".gitignore", "local.settings.json", "project.lock.json"})
_CORE_TOOLS_ESCAPE = re.compile(r"[\-\[\]/{}()+?.\\^$|]")
_NEVER = re.compile(r"$^")


def _patterns(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip() and not line.strip().startswith("#")]


def _core_tools_regex(patterns: list[str]) -> re.Pattern[str]:
    if not patterns:
        return _NEVER
    parts = [
        _CORE_TOOLS_ESCAPE.sub(lambda m: "\\" + m.group(0), p).replace("**", "(.+)").replace("*", "([^\\/]+)")
        for p in patterns
    ]
    return re.compile("^((" + ")|(".join(parts) + "))")


@dataclass(frozen=True)
class _GitPattern:
    regex: re.Pattern[str]
    negated: bool
    folder_only: bool
    anchored: bool  # has a slash before its end: matched against the whole path, else against the name


def _git_pattern(line: str) -> _GitPattern:
    negated = line.startswith("!")
    line = line[1:] if negated else line
    folder_only = line.endswith("/")
    line = line.rstrip("/")
    anchored = "/" in line
    line = line.lstrip("/")
    regex, i = "", 0
    while i < len(line):
        if line.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif line.startswith("/**", i) and i + 3 == len(line):
            regex, i = regex + "/.*", i + 3
        elif line[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif line[i] == "?":
            regex, i = regex + "[^/]", i + 1
        elif line[i] == "[" and "]" in line[i + 1 :]:
            end = line.index("]", i + 1)
            regex, i = regex + "[" + line[i + 1 : end].replace("!", "^", 1) + "]", end + 1
        else:
            regex, i = regex + re.escape(line[i]), i + 1
    return _GitPattern(re.compile(regex), negated, folder_only, anchored)


class FuncIgnore:
    """`.funcignore` as both deploying tools read it."""

    def __init__(self, text: str) -> None:
        patterns = _patterns(text)
        positive = [p.removeprefix("/") for p in patterns if not p.startswith("!")]
        negative = [p[1:].removeprefix("/") for p in patterns if p.startswith("!")]
        self._core_positive = _core_tools_regex(positive)
        self._core_negative = _core_tools_regex(negative)
        self._git = [_git_pattern(p) for p in patterns]

    @classmethod
    def load(cls, project: Path) -> FuncIgnore:
        path = project / ".funcignore"
        return cls(path.read_text(encoding="utf-8") if path.is_file() else "")

    def core_tools_keeps(self, relative: str) -> bool:
        parts = relative.lower().split("/")  # its folder and file names are compared ignoring case
        if CORE_TOOLS_SKIPPED_DIRS.intersection(parts[:-1]) or parts[-1] in CORE_TOOLS_SKIPPED_FILES:
            return False
        return bool(self._core_negative.match(relative)) or not self._core_positive.match(relative)

    def git_keeps(self, relative: str) -> bool:
        parts = relative.split("/")
        for depth in range(1, len(parts) + 1):  # a file in an ignored folder is ignored, whatever follows
            if self._git_ignores("/".join(parts[:depth]), folder=depth < len(parts)):
                return False
        return True

    def _git_ignores(self, path: str, *, folder: bool) -> bool:
        ignored = False
        for p in self._git:  # the last matching pattern decides
            if p.folder_only and not folder:
                continue
            if p.regex.fullmatch(path if p.anchored else path.rsplit("/", 1)[-1]):
                ignored = not p.negated
        return ignored

    def keeps(self, relative: str) -> bool:
        return self.core_tools_keeps(relative) and self.git_keeps(relative)

    def keeps_folder(self, relative: str) -> bool:
        """False when nothing under the folder can be kept (so the walk need not enter it)."""
        core_drops_all = self._core_negative is _NEVER and bool(self._core_positive.match(relative + "/"))
        parts = relative.split("/")
        git_drops_all = any(self._git_ignores("/".join(parts[:d]), folder=True) for d in range(1, len(parts) + 1))
        return not (core_drops_all or git_drops_all)


def package_files(project: Path) -> list[str]:
    """The relative paths (with `/`) of the files the package holds, in walk order; symlinked folders (the
    worktree's `models/`) are followed, as the deploying tools read the files they point to."""
    rules = FuncIgnore.load(project)
    kept: list[str] = []
    for folder, dirs, files in os.walk(project, followlinks=True):
        base = Path(folder).relative_to(project).as_posix()
        prefix = "" if base == "." else base + "/"
        dirs[:] = sorted(d for d in dirs if d not in ALWAYS_SKIPPED and rules.keeps_folder(prefix + d))
        kept.extend(prefix + f for f in sorted(files) if f not in ALWAYS_SKIPPED and rules.keeps(prefix + f))
    return kept


def build_package(project: Path, dest: Path) -> list[str]:
    """Copy the package's files from `project` into `dest` (a new folder); their relative paths."""
    files = package_files(project)
    for relative in files:
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project / relative, target)
    return files
