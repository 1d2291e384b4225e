"""The deployment walkthrough (infra/README.md) runs as pasted: every shell variable its commands use is set by
an earlier command, and every value read with `azd env get-value` is an output of main.bicep."""

from __future__ import annotations

import re

from bicep import INFRA_DIR, Templates

README = (INFRA_DIR / "README.md").read_text(encoding="utf-8")
ASSIGNMENT = re.compile(r"(?:^|[;&|]\s*|\bexport\s+)([A-Za-z_][A-Za-z0-9_]*)=")
USE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
AZD_VALUE = re.compile(r"azd env get-value\s+([A-Za-z_][A-Za-z0-9_]*)")


def commands() -> list[str]:
    """The lines of the bash blocks, in order, without comments (continuation lines joined)."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if line:
                lines.append(line)
    return lines


def unset_variables(lines: list[str]) -> list[str]:
    assigned: set[str] = set()
    problems = []
    for line in lines:
        for name in USE.findall(line):
            if name not in assigned and not re.search(rf"(?:^|[;&|]\s*|\bexport\s+){name}=", line.split("$")[0]):
                problems.append(f"${name} is used before it is set: {line}")
        assigned.update(ASSIGNMENT.findall(line))
    return problems


def test_the_walkthrough_has_commands() -> None:
    assert any("azd up" in line for line in commands())


def test_every_variable_is_set_by_an_earlier_command() -> None:
    assert unset_variables(commands()) == []


def test_the_check_finds_a_variable_nobody_sets() -> None:
    assert unset_variables(['curl -s "$SERVICE_API_URI/health"']) != []
    assert unset_variables(["SERVICE_API_URI=$(azd env get-value SERVICE_API_URI)", 'curl "$SERVICE_API_URI"']) == []


def test_values_read_from_azd_are_outputs_of_main_bicep(templates: Templates) -> None:
    read = set(AZD_VALUE.findall(README))
    assert read, "the walkthrough reads the API's address from azd"
    assert read <= set(templates.parsed["main.bicep"]["outputs"])
