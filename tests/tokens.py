"""Test credentials for bearer tokens: RSA keys made in the test, JWTs signed with them, and a JWKS (with OIDC
metadata) served by a real HTTP server on loopback that counts what it is asked."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/v2.0"
AUDIENCE = "api://inferq"
ACME_OID = "0f0e0d0c-0000-4000-8000-00000000acme"
ADMIN_OID = "0f0e0d0c-0000-4000-8000-0000000admin"


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))

    def jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def sign(self, claims: dict[str, Any] | None = None, *, header: dict[str, Any] | None = None, **extra: Any) -> str:
        return jwt.encode(
            {**token_claims(), **(claims or {}), **extra},
            self.private,
            "RS256",
            headers={"kid": self.kid, **(header or {})},
        )


def token_claims(oid: str = ACME_OID, lifetime_s: int = 3600) -> dict[str, Any]:
    """What an Entra ID v2 access token for the API carries (the parts that matter here)."""
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "oid": oid, "sub": "subject-" + oid, "azp": "client-app",
            "iat": now, "nbf": now, "exp": now + lifetime_s}  # fmt: skip


class JwksServer:
    """/keys (the JWKS) and /.well-known/openid-configuration, on a free loopback port, in a thread."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = keys
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                if self.path == "/keys":
                    body = {"keys": [k.jwk() for k in server.keys]}
                elif self.path == "/.well-known/openid-configuration":
                    body = {"issuer": ISSUER, "jwks_uri": server.url + "/keys"}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def jwks_uri(self) -> str:
        return self.url + "/keys"

    @property
    def metadata_url(self) -> str:
        return self.url + "/.well-known/openid-configuration"


@contextmanager
def jwks_server(keys: list[SigningKey]) -> Iterator[JwksServer]:
    server = JwksServer(keys)
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(5)


def issuer_toml(
    source: str, *, claim: str = "oid", tenants: dict[str, str] | None = None, admins: tuple[str, ...] = ()
) -> str:
    """An `[[auth.issuers]]` block trusting ISSUER for AUDIENCE; `source` is e.g. 'jwks_uri = "..."'."""
    mapping = ", ".join(f'"{v}" = "{t}"' for v, t in (tenants or {ACME_OID: "acme"}).items())
    return (
        f'[[auth.issuers]]\nissuer = "{ISSUER}"\naudiences = ["{AUDIENCE}"]\n{source}\nclaim = "{claim}"\n'
        f"admins = {json.dumps(list(admins))}\ntenants = {{ {mapping} }}\n\n"
    )
