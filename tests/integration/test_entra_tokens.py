"""Bearer JWTs (Entra ID access tokens): RS256 tokens from a configured issuer map to a tenant (or an admin) by a
claim; every bad token is 401 in the error envelope, saying why, with `WWW-Authenticate: Bearer
error="invalid_token"`. Keys made in the test; the JWKS served over real HTTP (and from a file), fetched once and
cached, re-read for a new kid, but not for every made-up one."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from shared.bootstrap import Inferq, bootstrap
from shared.domain.config import load_config
from shared.domain.tokens import TokenRejected
from shared.settings import Settings
from tests.conftest import KEYS, app_client, write_config
from tests.tokens import ACME_OID, ADMIN_OID, AUDIENCE, ISSUER, JwksServer, SigningKey, issuer_toml, jwks_server

KEY = SigningKey("key-1")  # one RSA key for the module: made once, 2048 bits take a moment


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    with jwks_server([KEY]) as server:
        yield server


def service_for(tmp_path: Path, source: str, **settings: float) -> Inferq:
    tmp_path.mkdir(exist_ok=True)
    path = write_config(tmp_path / "tokens.toml", extra=issuer_toml(source, admins=(ADMIN_OID,)))
    s = Settings(data_dir=tmp_path / "data", config=path, _env_file=None, **settings)  # type: ignore[arg-type]
    return bootstrap(s, config=load_config(path))


@pytest.fixture
def client(tmp_path: Path, jwks: JwksServer) -> Iterator[TestClient]:
    with app_client(service_for(tmp_path, f'jwks_uri = "{jwks.jwks_uri}"')) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_the_public_key() -> str:
    """The algorithm-confusion attack: HMAC keyed with the issuer's public key, which anyone can read."""
    public = KEY.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': KEY.kid}).encode())}."
    signing_input += b64(json.dumps(KEY_CLAIMS()).encode())
    signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def without_exp() -> str:
    claims = KEY_CLAIMS()
    del claims["exp"]
    return jwt.encode(claims, KEY.private, "RS256", headers={"kid": KEY.kid})


def KEY_CLAIMS() -> dict[str, object]:  # noqa: N802
    return jwt.decode(KEY.sign(), options={"verify_signature": False})


def now() -> int:
    return int(time.time())


BAD: dict[str, tuple[Callable[[], str], str]] = {
    "expired": (lambda: KEY.sign(exp=now() - 3600, iat=now() - 7200, nbf=now() - 7200), "Token expired."),
    "not yet valid": (lambda: KEY.sign(nbf=now() + 3600, iat=now() + 3600), "Token not valid yet"),
    "wrong audience": (lambda: KEY.sign(aud="api://someone-else"), "audience (aud) not accepted"),
    "wrong issuer": (lambda: KEY.sign(iss="https://sts.example.invalid/"), "issuer (iss) not trusted"),
    "unsigned": (lambda: jwt.encode(KEY_CLAIMS(), None, algorithm="none"), "algorithm 'none' not accepted"),
    "HS256 keyed with the public key": (hs256_with_the_public_key, "algorithm 'HS256' not accepted"),
    "signed by another key": (lambda: SigningKey(KEY.kid).sign(), "signature does not verify"),
    "unknown kid": (lambda: SigningKey("key-unknown").sign(), "key ('key-unknown') that the issuer's key set"),
    "unmapped principal": (lambda: KEY.sign(oid="someone-unknown"), "'oid' is not mapped to a tenant"),
    "no expiry": (lambda: without_exp(), "lacks the 'exp' claim"),
    "not JSON inside": (lambda: "eyJub3Q.anNvbg.c2ln", "malformed"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_each_bad_token_is_401_saying_why(client: TestClient, case: str) -> None:
    make, reason = BAD[case]
    token = make()
    r = client.get("/usage", headers=bearer(token))
    assert r.status_code == 401, r.text
    error = r.json()["error"]
    assert error["code"] == "Unauthorized" and reason in error["message"]
    assert r.headers["www-authenticate"].startswith('Bearer error="invalid_token", error_description="')
    assert reason.split("'")[0] in r.headers["www-authenticate"]
    body = r.text
    for part in token.split("."):
        assert len(part) < 8 or part not in body  # the token is not echoed


def test_a_valid_token_is_its_tenant_and_an_admin_token_reads_any_tenant(client: TestClient) -> None:
    r = client.get("/usage", headers=bearer(KEY.sign()))
    assert r.status_code == 200, r.text
    assert r.json()["tenant"] == "acme"
    assert client.get("/usage?tenant=globex", headers=bearer(KEY.sign())).status_code == 403  # acme's only
    admin = KEY.sign(oid=ADMIN_OID)
    assert client.get("/usage?tenant=globex", headers=bearer(admin)).json()["tenant"] == "globex"
    assert client.get("/deployments", headers=bearer(admin)).status_code == 200
    # Keys work as before, alongside tokens, from either header.
    assert client.get("/usage", headers={"api-key": KEYS["globex"]}).json()["tenant"] == "globex"
    assert client.get("/usage", headers=bearer(KEYS["globex"])).json()["tenant"] == "globex"


def test_a_token_names_its_principal_on_its_job(client: TestClient) -> None:
    from shared.bootstrap import get_app

    service = get_app()
    caller = service.gateway.authenticate(KEY.sign())
    assert (caller.tenant, caller.key_id) == ("acme", f"entra:{ACME_OID}")
    job = service.gateway.submit(caller, service.config.default_deployment, {"input": ["x"]}).job
    assert service.store.get(job.id).key_id == f"entra:{ACME_OID}"  # type: ignore[union-attr]


def test_the_claim_may_be_the_client_app_or_a_role(tmp_path: Path, jwks: JwksServer) -> None:
    source = f'jwks_uri = "{jwks.jwks_uri}"'
    for claim, value, token in (
        ("appid", "client-app", KEY.sign()),  # a v2 token names its client app `azp`
        ("roles", "Tenant.Globex", KEY.sign(roles=["Reader", "Tenant.Globex"])),
    ):
        path = write_config(
            tmp_path / f"{claim}.toml", extra=issuer_toml(source, claim=claim, tenants={value: "globex"})
        )
        service = bootstrap(Settings(data_dir=tmp_path / claim, config=path, _env_file=None), config=load_config(path))
        assert service.gateway.authenticate(token).tenant == "globex"


def test_keys_from_a_jwks_file_or_oidc_metadata(tmp_path: Path, jwks: JwksServer) -> None:
    keys_file = tmp_path / "jwks.json"
    keys_file.write_text(json.dumps({"keys": [KEY.jwk()]}))
    for name, source in (("file", f'jwks_file = "{keys_file}"'), ("metadata", f'metadata_url = "{jwks.metadata_url}"')):
        with app_client(service_for(tmp_path / name, source)) as c:
            assert c.get("/usage", headers=bearer(KEY.sign())).json()["tenant"] == "acme"
            r = c.get("/usage", headers=bearer(SigningKey(KEY.kid).sign()))
            assert r.status_code == 401 and "signature" in r.json()["error"]["message"]
    assert jwks.hits == {"/.well-known/openid-configuration": 1, "/keys": 1}


def test_the_key_set_is_read_once_and_made_up_kids_do_not_hammer_the_issuer(tmp_path: Path, jwks: JwksServer) -> None:
    service = service_for(tmp_path, f'jwks_uri = "{jwks.jwks_uri}"', jwks_refresh_min_s=3600)
    with app_client(service) as c:
        for _ in range(5):
            assert c.get("/usage", headers=bearer(KEY.sign())).status_code == 200
        for _ in range(5):
            token = SigningKey(uuid.uuid4().hex, KEY.private).sign()
            assert c.get("/usage", headers=bearer(token)).status_code == 401
    assert jwks.hits == {"/keys": 1}


def test_a_new_signing_key_is_fetched_when_a_token_names_it(tmp_path: Path, jwks: JwksServer) -> None:
    service = service_for(tmp_path, f'jwks_uri = "{jwks.jwks_uri}"', jwks_refresh_min_s=0)
    rotated = SigningKey("key-2")
    with app_client(service) as c:
        assert c.get("/usage", headers=bearer(KEY.sign())).status_code == 200
        assert c.get("/usage", headers=bearer(rotated.sign())).status_code == 401  # not published yet
        jwks.keys.append(rotated)  # the issuer rolls its keys
        assert c.get("/usage", headers=bearer(rotated.sign())).status_code == 200
        assert c.get("/usage", headers=bearer(KEY.sign())).status_code == 200  # cached: no read
    assert jwks.hits == {"/keys": 3}


def test_an_unreachable_issuer_is_503_not_401(tmp_path: Path) -> None:
    with jwks_server([KEY]) as gone:
        uri = gone.jwks_uri
    with app_client(service_for(tmp_path, f'jwks_uri = "{uri}"', jwks_timeout_s=2)) as c:
        r = c.get("/usage", headers=bearer(KEY.sign()))
    assert r.status_code == 503 and "signing keys" in r.json()["error"]["message"]
    assert ISSUER and AUDIENCE  # the issuer and audience the tokens carry (tests/tokens.py)


def test_clock_skew_within_the_leeway_is_allowed(tmp_path: Path, jwks: JwksServer) -> None:
    source = f'jwks_uri = "{jwks.jwks_uri}"'
    lenient = service_for(tmp_path / "lenient", source)  # INFERQ_AUTH_LEEWAY_S: 60 by default
    strict = service_for(tmp_path / "strict", source, auth_leeway_s=0)
    just_expired = KEY.sign(exp=now() - 20, iat=now() - 600, nbf=now() - 600)
    from_a_fast_clock = KEY.sign(nbf=now() + 20, iat=now() + 20)
    for token in (just_expired, from_a_fast_clock):
        assert lenient.gateway.authenticate(token).tenant == "acme"
        with pytest.raises(TokenRejected):
            strict.gateway.authenticate(token)
