"""checkov finds no failed check in infra/ (scripts/check_infra.sh; it installs checkov into .venv-infra on the
first run, which takes a minute or two)."""

from __future__ import annotations

import shutil
import subprocess

from bicep import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "check_infra.sh"


def test_checkov_reports_no_failed_check() -> None:
    bash = shutil.which("bash")
    assert bash, "bash is needed to run scripts/check_infra.sh"
    result = subprocess.run(
        [bash, str(SCRIPT)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800, check=False
    )
    report = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    assert result.returncode == 0, report
    assert "Failed checks: 0" in result.stdout, report
