"""The platform's health check probes readiness (`/health/ready`: 503 naming a backend that does not answer), not
liveness (`/health`), at the path the app serves it (host.json's routePrefix is empty)."""

from __future__ import annotations

import json

from bicep import REPO_ROOT, SITE, Templates

READINESS_PATH = "/health/ready"


def test_the_function_app_health_check_probes_readiness(templates: Templates) -> None:
    (site,) = templates.resources(SITE)
    assert site.config["properties"]["siteConfig"]["healthCheckPath"] == READINESS_PATH


def test_the_health_check_path_is_the_apps_own_route() -> None:
    host = json.loads((REPO_ROOT / "host.json").read_text(encoding="utf-8"))
    assert host["extensions"]["http"]["routePrefix"] == "", "a route prefix would move /health/ready"


def test_the_health_check_is_not_skipped_in_checkov(templates: Templates) -> None:
    assert "CKV_AZURE_213" not in templates.texts["modules/functionapp.bicep"]
