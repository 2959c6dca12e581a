"""JWT bearer tokens: HS256 with a shared secret, RS256 from a JWKS file or URL, Supabase-style
claims (sub, role, a configurable organization claim), and every way a token can be bad."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from engramdb.errors import ConfigurationError

from .conftest import MakeKey, assert_error, bearer, owner_rows

SECRET = "test-jwt-secret-with-at-least-32-bytes!"  # tests/server/live.py's server_settings


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "user-123",
        "role": "authenticated",
        "org_id": "acme",
        "iat": now,
        "exp": now + 600,
        "aud": "authenticated",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def hs256(secret: str = SECRET, **changes: Any) -> str:
    return jwt.encode(claims(**changes), secret, algorithm="HS256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwks(*keys: tuple[str, rsa.RSAPrivateKey]) -> dict[str, Any]:
    out = []
    for kid, private in keys:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
        out.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
    return {"keys": out}


def rs256(private: rsa.RSAPrivateKey, kid: str = "k1", **changes: Any) -> str:
    return jwt.encode(claims(**changes), private, algorithm="RS256", headers={"kid": kid})


# -- HS256 ----------------------------------------------------------------------------------------


def test_hs256_token_authenticates_in_its_organization(client: TestClient, pg_url: str) -> None:
    h = bearer(hs256())
    info = client.get("/v1/info", headers=h).json()
    assert info["organization"] == "acme"
    assert info["principal"] == "jwt:user-123"
    assert info["scopes"] == ["read", "write"]  # role "authenticated"
    # The organization a token names is created on first use.
    assert owner_rows(pg_url, "SELECT id FROM organizations WHERE id = 'acme'")
    made = client.post("/v1/memories", json={"content": "from a token"}, headers=h)
    assert made.status_code == 201
    assert made.json()["organization_id"] == "acme"
    assert made.json()["created_by_id"] == "jwt:user-123"


def test_roles_map_to_scopes(client: TestClient) -> None:
    service = bearer(hs256(role="service_role"))
    assert client.get("/v1/info", headers=service).json()["scopes"] == ["admin", "read", "write"]
    assert client.get("/v1/keys", headers=service).status_code == 200
    anon = bearer(hs256(role="anon"))
    assert client.get("/v1/info", headers=anon).json()["scopes"] == ["read"]
    assert_error(client.post("/v1/memories", json={"content": "x"}, headers=anon), 403,
                 "permission_denied")  # fmt: skip
    # A scope claim narrows the role, never widens it.
    narrowed = bearer(hs256(role="authenticated", scope="read"))
    assert client.get("/v1/info", headers=narrowed).json()["scopes"] == ["read"]
    widened = bearer(hs256(role="anon", scopes=["read", "write", "admin"]))
    assert client.get("/v1/info", headers=widened).json()["scopes"] == ["read"]


def test_service_role_of_the_home_organization_is_an_operator(client: TestClient) -> None:
    operator = bearer(hs256(role="service_role", org_id="default"))
    assert client.get("/v1/organizations", headers=operator).status_code == 200
    made = client.post("/v1/keys", headers=operator,
                       json={"name": "for globex", "organization_id": "globex"})  # fmt: skip
    assert made.status_code == 201
    tenant_admin = bearer(hs256(role="service_role", org_id="acme"))
    resp = client.post("/v1/keys", headers=tenant_admin,
                       json={"name": "x", "organization_id": "globex"})  # fmt: skip
    assert_error(resp, 403, "permission_denied")


@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("expired", lambda: hs256(exp=int(time.time()) - 10)),
        ("wrong secret", lambda: hs256(secret="another-secret-of-at-least-32-bytes!!")),
        ("missing organization", lambda: hs256(org_id=None)),
        ("empty organization", lambda: hs256(org_id="")),
        ("invalid organization id", lambda: hs256(org_id="../../etc")),
        ("missing sub", lambda: hs256(sub=None)),
        ("missing exp", lambda: hs256(exp=None)),
        ("alg none", lambda: jwt.encode(claims(), None, algorithm="none")),
        ("alg HS512", lambda: jwt.encode(claims(), SECRET * 2, algorithm="HS512")),
        ("RS256 without a JWKS", lambda: rs256(_rsa())),
        ("garbage", lambda: "eyJhbGciOiJIUzI1NiJ9.not-base64!.sig"),
    ],
)
def test_bad_tokens_are_401(client: TestClient, case: str, make: Callable[[], str]) -> None:
    resp = client.get("/v1/memories", headers=bearer(make()))
    assert_error(resp, 401, "unauthenticated")
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert SECRET not in resp.text, case


def test_tampered_tokens_are_401(client: TestClient) -> None:
    token = hs256()
    header, payload, signature = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged["org_id"] = "globex"
    forged["role"] = "service_role"
    tampered = f"{header}.{_b64(json.dumps(forged).encode())}.{signature}"
    assert_error(client.get("/v1/memories", headers=bearer(tampered)), 401, "unauthenticated")
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert_error(client.get("/v1/memories", headers=bearer(flipped)), 401, "unauthenticated")
    assert client.get("/v1/memories", headers=bearer(token)).status_code == 200


def test_configurable_organization_claim_and_audience(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(jwt_org_claim="app_metadata.tenant", jwt_audience="authenticated")
    client = TestClient(app)
    nested = hs256(org_id=None, app_metadata={"tenant": "initech"})
    assert client.get("/v1/info", headers=bearer(nested)).json()["organization"] == "initech"
    # The default claim is not looked at any more.
    err = assert_error(client.get("/v1/info", headers=bearer(hs256())), 401, "unauthenticated")
    assert "app_metadata.tenant" in err["message"]
    wrong_aud = hs256(org_id=None, app_metadata={"tenant": "initech"}, aud="someone-else")
    assert_error(client.get("/v1/info", headers=bearer(wrong_aud)), 401, "unauthenticated")


def test_jwt_disabled_when_not_configured(make_app: Callable[..., FastAPI]) -> None:
    client = TestClient(make_app(jwt_secret=None))
    err = assert_error(client.get("/v1/info", headers=bearer(hs256())), 401, "unauthenticated")
    assert "not configured" in err["message"]


# -- RS256 from a JWKS ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signing_keys() -> dict[str, rsa.RSAPrivateKey]:
    return {"k1": _rsa(), "k2": _rsa(), "stranger": _rsa()}


def test_rs256_from_a_jwks_file(
    make_app: Callable[..., FastAPI], tmp_path: Path, signing_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(_jwks(("k1", signing_keys["k1"]), ("k2", signing_keys["k2"]))))
    client = TestClient(make_app(jwt_secret=None, jwt_jwks=str(jwks)))
    for kid in ("k1", "k2"):
        token = rs256(signing_keys[kid], kid=kid, org_id="initech")
        assert client.get("/v1/info", headers=bearer(token)).json()["organization"] == "initech"
    # Signed by a key not in the set, under a known kid: refused.
    impostor = rs256(signing_keys["stranger"], kid="k1")
    assert_error(client.get("/v1/info", headers=bearer(impostor)), 401, "unauthenticated")
    unknown_kid = rs256(signing_keys["k1"], kid="k9")
    assert_error(client.get("/v1/info", headers=bearer(unknown_kid)), 401, "unauthenticated")
    expired = rs256(signing_keys["k1"], exp=int(time.time()) - 5)
    err = assert_error(client.get("/v1/info", headers=bearer(expired)), 401, "unauthenticated")
    assert "expired" in err["message"]
    # Algorithm confusion: an HS256 token "signed" with the public key is refused (no secret).
    public_pem = (
        signing_keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    confused = _hs256_with_raw_key(public_pem)
    assert_error(client.get("/v1/info", headers=bearer(confused)), 401, "unauthenticated")


def _hs256_with_raw_key(key: bytes) -> str:
    """An HS256 token keyed with arbitrary bytes (PyJWT itself refuses PEM keys for HMAC)."""
    import hashlib
    import hmac

    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims()).encode())
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def test_unreadable_jwks_file_is_a_configuration_error(
    make_app: Callable[..., FastAPI], tmp_path: Path
) -> None:
    def listeners() -> int:
        return sum(t.name == "engramdb-key-changes" for t in threading.enumerate())

    before = listeners()
    bad = tmp_path / "jwks.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigurationError):
        make_app(jwt_jwks=str(bad))
    with pytest.raises(ConfigurationError):
        make_app(jwt_jwks=str(tmp_path / "missing.json"))
    # A refused start leaves nothing behind: no key-change listener, no pool.
    assert listeners() <= before


class _JwksHandler(http.server.BaseHTTPRequestHandler):
    body = b"{}"
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass


@pytest.fixture
def jwks_url(signing_keys: dict[str, rsa.RSAPrivateKey]) -> Iterator[str]:
    """A local stand-in for an identity provider's JWKS endpoint."""
    handler = type("Handler", (_JwksHandler,), {
        "body": json.dumps(_jwks(("k1", signing_keys["k1"]))).encode(), "hits": 0})  # fmt: skip
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()
    server.server_close()


def test_rs256_from_a_jwks_url(
    make_app: Callable[..., FastAPI], jwks_url: str, signing_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    client = TestClient(make_app(jwt_secret=None, jwt_jwks=jwks_url))
    token = rs256(signing_keys["k1"], org_id="hooli", role="service_role", sub="svc")
    info = client.get("/v1/info", headers=bearer(token)).json()
    assert info["organization"] == "hooli" and info["principal"] == "jwt:svc"
    assert "admin" in info["scopes"]
    impostor = rs256(signing_keys["stranger"], kid="k1", org_id="hooli")
    assert_error(client.get("/v1/info", headers=bearer(impostor)), 401, "unauthenticated")
    unknown_kid = rs256(signing_keys["k2"], kid="k2", org_id="hooli")
    assert_error(client.get("/v1/info", headers=bearer(unknown_kid)), 401, "unauthenticated")
    # HS256 is not accepted by a JWKS-only server.
    assert_error(client.get("/v1/info", headers=bearer(hs256())), 401, "unauthenticated")


def test_a_deleted_organization_refuses_its_tokens(client: TestClient, make_key: MakeKey) -> None:
    token = bearer(hs256(org_id="acme"))
    assert client.get("/v1/memories", headers=token).status_code == 200
    operator = bearer(make_key("default", "admin"))
    assert client.delete("/v1/organizations/acme", headers=operator).status_code == 204
    err = assert_error(client.get("/v1/memories", headers=token), 401, "unauthenticated")
    assert "deleted" in err["message"]
    # Tokens of other organizations are unaffected, new ones included.
    assert client.get("/v1/memories", headers=bearer(hs256(org_id="globex"))).status_code == 200
