"""The dashboard's vendored files are the ones recorded beside them (name, version, sha256 in
functions/http/dashboard/vendor/README.md), and the deployment package (.funcignore) keeps every file of the page."""

import hashlib
import re

from tests.conftest import ROOT
from tests.deploy_package import FuncIgnore

DASHBOARD = ROOT / "functions" / "http" / "dashboard"
RECORD = (DASHBOARD / "vendor" / "README.md").read_text(encoding="utf-8")


def test_each_vendored_file_matches_its_recorded_sha256() -> None:
    recorded = dict(re.findall(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", RECORD, re.M))
    assert set(recorded) == {"chart.umd.min.js", "chart.js-LICENSE.md"}
    for name, sha256 in recorded.items():
        assert hashlib.sha256((DASHBOARD / "vendor" / name).read_bytes()).hexdigest() == sha256, name


def test_the_vendored_chart_js_is_the_recorded_version_with_its_license_header() -> None:
    assert "| 4.6.1 |" in RECORD
    head = (DASHBOARD / "vendor" / "chart.umd.min.js").read_text(encoding="utf-8")[:200]
    assert head.startswith("/*!\n * Chart.js v4.6.1\n") and "Released under the MIT License" in head


def test_the_deployment_package_keeps_the_page() -> None:
    rules = FuncIgnore((ROOT / ".funcignore").read_text(encoding="utf-8"))
    for path in ("index.html", "dashboard.js", "vendor/chart.umd.min.js", "vendor/chart.js-LICENSE.md"):
        assert rules.keeps(f"functions/http/dashboard/{path}"), path
