"""The dashboard (`GET /dashboard`, issue 18) in headless Chromium against the real local host: after known traffic
(embeddings with known usage, a scoring request, one that fails), the totals the page renders beside its charts
equal what the traffic was billed, for a tenant key and for the tenant an admin key picks; requests, errors and
latency per deployment show for the admin; the failed job is listed; a bad key and a host that is gone say so.
The key never appears in a URL. Screenshots go to artifacts/ (git-ignored) for people to look at."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.domain.auth import hash_key
from shared.domain.config import load_config
from shared.schemas.usage import Meter
from tests.conftest import ADMIN_KEY, KEYS, ROOT, RunningHost, start_host, stop_host, wait_for, write_config
from tests.e2e.chromium import CHROMIUM, Chromium, Tab

pytestmark = pytest.mark.e2e

ARTIFACTS = ROOT / "artifacts"
TENANT, TENANT_KEY = "initech", "initech-key"  # the tenant with a monthly budget
BUDGET = Decimal("0.01")
ALL_TIME = {"from": "2000-01-01", "granularity": "month"}
TEXTS = {
    "acme": ["Acme sells anvils.", "Roadrunners are fast."],
    TENANT: ["Initech makes TPS reports.", "Did you get the memo?", "Yeah. I'm going to need you to come in Saturday."],
}
USAGE_JS = "JSON.parse(JSON.stringify(document.getElementById('usage').dataset))"
CHART_SUM_JS = "Chart.getChart('{id}').data.datasets.reduce((n, d) => n + d.data.reduce((a, b) => a + (b || 0), 0), 0)"


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tenant = f'[[tenants]]\nname = "{TENANT}"\nkey_sha256 = ["{hash_key(TENANT_KEY)}"]\nmonthly_budget = "{BUDGET}"\n'
    return write_config(tmp_path_factory.mktemp("dashboard") / "host.toml", extra=tenant)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, config_path: Path) -> Iterator[RunningHost]:
    env = {"INFERQ_STATS_FLUSH_S": "0"}  # job outcomes reach /deployments as jobs end
    running = start_host(tmp_path_factory.mktemp("dashboard-host"), env=env, config=config_path)
    yield running
    stop_host(running)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    assert CHROMIUM.exists(), "Chromium is missing: `make browser` installs it (apt-get install chromium)"
    folder = tmp_path_factory.mktemp("chromium")
    running = Chromium(folder / "profile", folder / "chromium.log")
    yield running
    running.close()


@pytest.fixture(scope="module")
def traffic(host: RunningHost, config_path: Path) -> dict[str, dict[str, Any]]:
    """Embeddings for two tenants, and for initech a scoring request and one whose script raises (a failed job).
    Returns per tenant the tokens and requests billed and their cost, computed from the responses and the prices."""
    config = load_config(config_path)
    token_price = config.deployment("all-MiniLM-L6-v2").prices[Meter.INPUT_TOKENS]
    request_price = config.deployment("linear-scorer").prices[Meter.REQUESTS]
    expected: dict[str, dict[str, Any]] = {}
    for tenant, texts in TEXTS.items():
        key = TENANT_KEY if tenant == TENANT else KEYS[tenant]
        tokens = requests = 0
        with host.client(key) as c:
            for text in texts:
                r = c.post("/embeddings", json={"input": [text, text.upper()]})
                assert r.status_code == 200, r.text
                tokens += r.json()["usage"]["prompt_tokens"]
            if tenant == TENANT:
                ok = c.post("/score", json={"model": "linear-scorer", "data": [[1, 2, 3]]})
                assert ok.status_code == 200, ok.text
                requests += 1
                failed = c.post("/score", json={"model": "linear-scorer", "data": [[1, 2]]})
                assert failed.status_code == 400 and failed.json()["error"]["code"] == "ScriptError", failed.text
                expected["failed_job"] = {"id": failed.headers["x-inferq-job-id"]}
            cost = Decimal(tokens) / 1000 * token_price + Decimal(requests) / 1000 * request_price
            expected[tenant] = {"tokens": tokens, "requests": requests, "cost": cost}

            def billed(c: httpx.Client = c, tokens: int = tokens, requests: int = requests) -> bool:
                body = c.get("/usage", params=ALL_TIME).json()
                return bool(body["total_tokens"] == tokens and body["total_requests"] == requests)

            wait_for(billed)
    assert expected["acme"]["tokens"] != expected[TENANT]["tokens"]
    with host.client(ADMIN_KEY) as admin:
        wait_for(lambda: figures(admin.get("/deployments").json())["linear-scorer"]["requests"] == 2)
    return expected


def figures(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for e in view["endpoints"] for d in e["deployments"]}


def open_dashboard(browser: Chromium, host: RunningHost, fragment: str) -> Tab:
    tab = browser.open(f"{host.url}/dashboard#{fragment}")
    tab.call("Network.enable")
    tab.wait_for("['ready', 'error'].includes(document.body.dataset.state)")
    return tab


def choose(tab: Tab, select: str, value: str) -> None:
    """Pick `value` in the page's <select id=select>, as a person would (its change event fires)."""
    script = "(s => { s.value = '%s'; s.dispatchEvent(new Event('change')); })(document.getElementById('%s'))"
    tab.evaluate(script % (value, select))


def sent_requests(browser: Chromium, tab: Tab) -> list[dict[str, Any]]:
    return [
        e["params"]["request"]
        for e in browser.events
        if e.get("sessionId") == tab.session and e.get("method") == "Network.requestWillBeSent"
    ]


def check_usage(tab: Tab, tenant: str, expected: dict[str, Any]) -> None:
    shown = tab.evaluate(USAGE_JS)
    assert shown["tenant"] == tenant, shown
    assert int(shown["totalTokens"]) == expected["tokens"], shown
    assert int(shown["totalRequests"]) == expected["requests"], shown
    assert Decimal(shown["totalCost"]) == expected["cost"], shown
    text = tab.evaluate("document.getElementById('usage-total-tokens').textContent")
    assert text.startswith(f"{expected['tokens']} tokens")
    # The charts hold the same numbers: every token in the tokens chart, every cent (to float precision) in cost.
    assert tab.evaluate(CHART_SUM_JS.format(id="tokens-chart")) == expected["tokens"]
    assert float(tab.evaluate(CHART_SUM_JS.format(id="cost-chart"))) == pytest.approx(float(expected["cost"]))


def test_a_tenant_key_sees_its_usage_budget_and_failed_job(
    browser: Chromium, host: RunningHost, traffic: dict[str, dict[str, Any]]
) -> None:
    tab = open_dashboard(browser, host, f"key={TENANT_KEY}")
    assert tab.evaluate("document.body.dataset.state") == "ready", tab.evaluate("document.body.innerText")
    check_usage(tab, TENANT, traffic[TENANT])

    budget = tab.evaluate("JSON.parse(JSON.stringify(document.getElementById('budget').dataset))")
    assert Decimal(budget["budget"]) == BUDGET and Decimal(budget["spent"]) == traffic[TENANT]["cost"], budget
    assert float(budget["percent"]) == pytest.approx(float(100 * traffic[TENANT]["cost"] / BUDGET), abs=1e-4)
    assert f"of {BUDGET} USD spent this month" in tab.evaluate("document.getElementById('budget-text').textContent")

    failed = tab.evaluate("[...document.querySelectorAll('#failed-table tbody tr')].map(r => r.innerText)")
    assert len(failed) == 1 and traffic["failed_job"]["id"] in failed[0], failed
    assert "ScriptError" in failed[0] and "row 0 must hold 3 numbers" in failed[0], failed
    # No admin key: no tenant picker, and a note instead of the deployments' figures.
    assert tab.evaluate("document.getElementById('tenant-picker').hidden") is True
    assert tab.evaluate("document.getElementById('deployments').dataset.available") == "false"
    assert tab.evaluate("document.getElementById('deployments-note').hidden") is False

    # Drawn, not just computed: the canvases have pixels.
    painted = "(() => { const c = document.getElementById('tokens-chart'); const d = c.getContext('2d')"
    painted += ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4)"
    painted += " n += d[i] > 0; return n; })()"
    assert tab.evaluate(painted) > 1000

    requests = sent_requests(browser, tab)
    assert all(r["url"].startswith(host.url) for r in requests), [r["url"] for r in requests]  # no CDN
    assert not [r["url"] for r in requests if TENANT_KEY in r["url"]]  # the key never in a URL
    api = [r for r in requests if "/usage" in r["url"] or "/dashboard/summary" in r["url"]]
    assert api and all(r["headers"].get("api-key") == TENANT_KEY for r in api)
    assert TENANT_KEY not in tab.evaluate("location.href")  # taken out of the address bar
    assert tab.problems() == []  # no script error, no Content-Security-Policy violation
    tab.screenshot(ARTIFACTS / "dashboard-tenant.png")


def test_an_admin_key_picks_a_tenant_and_sees_the_deployments(
    browser: Chromium, host: RunningHost, traffic: dict[str, dict[str, Any]]
) -> None:
    tab = open_dashboard(browser, host, f"key={ADMIN_KEY}")
    assert tab.evaluate("document.body.dataset.state") == "ready", tab.evaluate("document.body.innerText")
    tenants = tab.evaluate("[...document.getElementById('tenant').options].map(o => o.value)")
    assert tenants == ["acme", "globex", TENANT]
    check_usage(tab, "acme", traffic["acme"])  # the first tenant, until one is picked
    assert tab.evaluate("document.getElementById('failed').dataset.count") == "0"

    tab.evaluate(
        f"(s => {{ s.value = '{TENANT}'; s.dispatchEvent(new Event('change')); }})(document.getElementById('tenant'))"
    )
    tab.wait_for(
        f"document.body.dataset.state === 'ready' && document.getElementById('usage').dataset.tenant === '{TENANT}'"
    )
    check_usage(tab, TENANT, traffic[TENANT])
    assert tab.evaluate("document.getElementById('failed').dataset.count") == "1"
    assert f"tenant={TENANT}" in tab.evaluate("location.hash") and ADMIN_KEY not in tab.evaluate("location.href")

    rows = tab.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#deployments-table tbody tr')]"
        ".map(r => [r.dataset.deployment, JSON.parse(JSON.stringify(r.dataset))]))"
    )
    embeddings = sum(len(texts) for texts in TEXTS.values())
    assert rows["all-MiniLM-L6-v2"]["requests"] == str(embeddings) and rows["all-MiniLM-L6-v2"]["errors"] == "0"
    assert rows["linear-scorer"]["requests"] == "2" and rows["linear-scorer"]["errors"] == "1"
    for name in ("all-MiniLM-L6-v2", "linear-scorer"):
        p50, p95 = float(rows[name]["p50"]), float(rows[name]["p95"])
        assert 0 < p50 <= p95, rows[name]
    requests_drawn = "Chart.getChart('deployments-chart').data.datasets[0].data.reduce((a, b) => a + b, 0)"
    assert tab.evaluate(requests_drawn) == sum(int(r["requests"]) for r in rows.values())
    assert tab.problems() == []
    tab.screenshot(ARTIFACTS / "dashboard-admin.png")


def test_a_bad_key_says_so_and_asks_for_another(browser: Chromium, host: RunningHost) -> None:
    tab = open_dashboard(browser, host, "key=not-a-key")
    assert tab.evaluate("document.body.dataset.state") == "error"
    message = tab.evaluate("document.getElementById('message').textContent")
    assert "The API key was refused (401" in message and "Invalid API key" in message, message
    assert tab.evaluate("document.getElementById('key-form').hidden") is False
    assert tab.evaluate("sessionStorage.length") == 0  # the refused key is not kept

    # The key field works as the fragment does.
    tab.evaluate(f"document.getElementById('key').value = '{KEYS['globex']}'")
    tab.evaluate("document.getElementById('key-form').requestSubmit()")
    tab.wait_for("document.body.dataset.state === 'ready'")
    assert tab.evaluate(USAGE_JS)["tenant"] == "globex"
    assert tab.evaluate("document.getElementById('message').hidden") is True


def test_a_host_that_is_gone_says_so(browser: Chromium, tmp_path: Path) -> None:
    own = start_host(tmp_path)
    try:
        tab = open_dashboard(browser, own, f"key={KEYS['acme']}")
        assert tab.evaluate("document.body.dataset.state") == "ready"
    finally:
        stop_host(own)
    tab.evaluate(
        "(s => { s.value = 'day'; s.dispatchEvent(new Event('change')); })(document.getElementById('granularity'))"
    )
    tab.wait_for("document.body.dataset.state === 'error'")
    message = tab.evaluate("document.getElementById('message').textContent")
    assert f"The inferq API at {own.url} did not answer" in message and "Is the host running?" in message, message


def test_the_page_is_served_with_strict_headers_and_no_inline_script(host: RunningHost) -> None:
    page = httpx.get(f"{host.url}/dashboard", timeout=30)  # no key: the page holds no data
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self';" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["referrer-policy"] == "no-referrer"
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts and all('src="' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+=", page.text)  # no inline event handlers
    assert "http://" not in page.text.replace("http://www.w3", "") and "https://" not in page.text  # no CDN
    for asset in ("dashboard/dashboard.js", "dashboard/vendor/chart.umd.min.js"):
        r = httpx.get(f"{host.url}/{asset}", timeout=30)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript"), asset
        assert r.headers["content-security-policy"] == policy
    slash = httpx.get(f"{host.url}/dashboard/", timeout=30, follow_redirects=True)
    assert str(slash.url) == f"{host.url}/dashboard" and slash.text == page.text
    for missing in ("dashboard/nothing.js", "dashboard/vendor/README.md", "dashboard/..%2Findex.html"):
        r = httpx.get(f"{host.url}/{missing}", timeout=30)
        assert r.status_code == 404 and r.json()["error"]["code"] == "NotFound", missing


def test_the_summary_keeps_tenants_apart(host: RunningHost, traffic: dict[str, dict[str, Any]]) -> None:
    with host.client(TENANT_KEY) as mine, host.client(KEYS["acme"]) as acme, host.client(ADMIN_KEY) as admin:
        body = mine.get("/dashboard/summary").json()
        assert body["tenant"] == TENANT and body["tenants"] == [TENANT] and body["admin"] is False
        assert body["monthly_budget"] == str(BUDGET) and body["currency"] == "USD"
        assert [j["id"] for j in body["failed_jobs"]] == [traffic["failed_job"]["id"]]
        assert body["failed_jobs"][0]["error"]["code"] == "ScriptError"
        other = acme.get("/dashboard/summary").json()
        assert other["tenant"] == "acme" and other["failed_jobs"] == [] and other["monthly_budget"] is None
        refused = acme.get("/dashboard/summary", params={"tenant": TENANT})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "Forbidden"
        assert httpx.get(f"{host.url}/dashboard/summary", timeout=30).status_code == 401
        picked = admin.get("/v1/dashboard/summary", params={"tenant": TENANT}).json()
        assert picked["tenant"] == TENANT and picked["failed_jobs"] == body["failed_jobs"]
        assert admin.get("/dashboard/summary").json()["tenants"] == ["acme", "globex", TENANT]
        assert admin.get("/dashboard/summary", params={"tenant": "nobody"}).status_code == 404
