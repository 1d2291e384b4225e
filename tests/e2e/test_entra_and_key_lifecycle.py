"""Entra ID tokens and key lifecycle on the real local host. An RS256 token from the configured issuer (its JWKS
served over loopback HTTP), passed by the openai SDK as its api_key, is served and billed to the tenant its `oid`
maps to; the usage events in the usage log name `entra:<oid>`, and a key's requests its key id. While the host
runs, `inferq keys` creates, expires and revokes keys: each takes effect without a restart, and a broken edit of
the config keeps the last good keys."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from azure.ai.inference import EmbeddingsClient
from azure.core.credentials import AccessToken
from openai import AuthenticationError, OpenAI
from typer.testing import CliRunner

from functions.cli.app import app as cli
from shared.domain.auth import hash_key
from tests.conftest import ADMIN_KEY, KEYS, RunningHost, start_host, stop_host, wait_for, write_config
from tests.tokens import ACME_OID, SigningKey, issuer_toml, jwks_server

pytestmark = pytest.mark.e2e
KEY = SigningKey("entra-key-1")
MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def entra_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningHost, Path]]:
    tmp = tmp_path_factory.mktemp("entra")
    with jwks_server([KEY]) as jwks:
        config = write_config(tmp / "host.toml", extra=issuer_toml(f'jwks_uri = "{jwks.jwks_uri}"'))
        host = start_host(tmp, config=config, env={"INFERQ_CONFIG_RELOAD_S": "0.1"})
        try:
            yield host, config
        finally:
            stop_host(host)


def usage_log_rows(host: RunningHost) -> list[dict[str, object]]:
    with sqlite3.connect(host.data_dir / "inferq.sqlite3") as db:
        return [json.loads(body) for (body,) in db.execute("SELECT body FROM usage_log")]


def billed(host: RunningHost, tenant: str) -> int:
    with host.client(ADMIN_KEY) as admin:
        r = admin.get("/usage", params={"tenant": tenant, "from": "2000-01-01", "granularity": "month"})
        assert r.status_code == 200, r.text
        return int(r.json()["total_tokens"])


def test_a_token_from_the_sdk_is_served_billed_to_its_tenant_and_named_in_the_usage_log(
    entra_host: tuple[RunningHost, Path],
) -> None:
    host, _ = entra_host
    before = billed(host, "acme")
    with OpenAI(base_url=host.url, api_key=KEY.sign(), max_retries=0) as client:
        raw = client.embeddings.with_raw_response.create(model=MODEL, input=["Tokens from Entra ID.", "Billed."])
        tokens = raw.parse().usage.prompt_tokens
        token_job = raw.headers["x-inferq-job-id"]
    with host.client(KEYS["globex"]) as c:
        r = c.post("/embeddings", json={"input": ["A key's request."]})
        assert r.status_code == 200, r.text
        key_job = r.headers["x-inferq-job-id"]
    wait_for(lambda: billed(host, "acme") == before + tokens)

    rows = {row["job_id"]: row for row in usage_log_rows(host)}
    assert rows[token_job]["tenant"] == "acme" and rows[token_job]["key_id"] == f"entra:{ACME_OID}"
    assert rows[key_job]["tenant"] == "globex" and rows[key_job]["key_id"] == hash_key(KEYS["globex"])[:8]
    assert KEYS["globex"] not in json.dumps(list(rows.values()))  # the id, never the key

    with OpenAI(base_url=host.url, api_key=SigningKey(KEY.kid).sign(), max_retries=0) as forged:
        with pytest.raises(AuthenticationError) as refused:
            forged.embeddings.create(model=MODEL, input=["Signed by someone else."])
    assert "signature does not verify" in str(refused.value)


class EntraCredential:
    """A TokenCredential (what DefaultAzureCredential is): hands the SDK a token for the scope it asks for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_: object) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(KEY.sign(), int(time.time()) + 3600)


def test_azure_ai_inference_with_a_token_credential_is_served_as_its_tenant(
    entra_host: tuple[RunningHost, Path],
) -> None:
    host, _ = entra_host
    credential = EntraCredential()

    def named() -> list[dict[str, object]]:
        return [row for row in usage_log_rows(host) if row["key_id"] == f"entra:{ACME_OID}"]

    before = len(named())
    scope = "api://inferq/.default"
    with EmbeddingsClient(endpoint=host.url, credential=credential, credential_scopes=[scope]) as client:
        # The SDK sends bearer tokens over https only; the local host is http.
        result = client.embed(input=["Entra ID from azure-ai-inference."], model=MODEL, enforce_https=False)
    assert len(result.data[0].embedding) == 384 and credential.scopes == [(scope,)]
    wait_for(lambda: len(named()) > before)
    assert all(row["tenant"] == "acme" for row in named())


def status(host: RunningHost, key: str) -> tuple[int, str]:
    with host.client(key) as c:
        r = c.post("/embeddings", json={"input": ["Key lifecycle."]})
    return r.status_code, r.text


def inferq(config: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--config", str(config)])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_keys_created_expired_and_revoked_while_the_host_runs(entra_host: tuple[RunningHost, Path]) -> None:
    host, config = entra_host
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    first = inferq(config, "keys", "create", "--tenant", "acme", "--id", "rotation-1", "--expires", later)
    wait_for(lambda: status(host, first)[0] == 200)
    second = inferq(config, "keys", "create", "--tenant", "acme", "--id", "rotation-2")
    wait_for(lambda: status(host, second)[0] == 200)

    # Rotation: the old key is given an expiry (here: already past), then refused as expired.
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    inferq(config, "keys", "expire", "--tenant", "acme", "--id", "rotation-1", "--at", past)
    wait_for(lambda: status(host, first)[0] == 401)
    code, body = status(host, first)
    assert "API key expired (key id 'rotation-1'" in json.loads(body)["error"]["message"]

    # A broken edit is not applied: the last good keys stay, and the log says why.
    good = config.read_text()
    config.write_text(good.replace('currency = "USD"', "currency = ["))
    # (The file is checked when a request authenticates, at most every INFERQ_CONFIG_RELOAD_S.)
    wait_for(lambda: status(host, second)[0] == 200 and "not applied" in host.log())
    config.write_text(good)

    inferq(config, "keys", "revoke", "--tenant", "acme", "--id", "rotation-2")
    wait_for(lambda: status(host, second)[0] == 401)
    assert json.loads(status(host, second)[1])["error"]["message"] == "Invalid API key."
    assert status(host, KEYS["acme"])[0] == 200  # the tenant's other key is untouched
    with httpx.Client(base_url=host.url) as c:
        assert c.get("/health").status_code == 200  # the same process throughout
    assert host.process.poll() is None
