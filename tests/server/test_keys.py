"""API keys: created (library and /v1/keys), shown once and stored as a hash; scopes; listing,
revocation, disabling and expiry taking effect on the next request; last_used_at."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from engramdb.errors import AuthenticationError, Conflict, InvalidInput, NotFound
from engramdb.service.keys import KEY_PREFIX, ApiKeys

from .conftest import MakeKey, assert_error, bearer, owner_rows


def _row(pg_url: str, key_id: object) -> dict[str, object]:
    rows = owner_rows(pg_url, "SELECT * FROM api_keys WHERE id = %s", key_id)
    assert len(rows) == 1
    return rows[0]


def test_library_key_secret_is_shown_once_and_only_its_hash_is_stored(
    app: FastAPI, pg_url: str
) -> None:
    keys: ApiKeys = app.state.engramdb.keys
    key, secret = keys.create("acme", name="ci", scopes="read,write")
    assert secret.startswith(key.prefix + "_") and key.prefix.startswith(KEY_PREFIX)
    assert len(secret) > 40
    row = _row(pg_url, key.id)
    assert row["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    # The secret is nowhere in the row, not even in part beyond the visible prefix.
    body = secret.removeprefix(key.prefix + "_")
    assert all(body not in str(value) for value in row.values())
    assert row["organization_id"] == "acme" and row["scopes"] == ["read", "write"]
    # A new organization is created for it.
    assert owner_rows(pg_url, "SELECT id FROM organizations WHERE id = 'acme'")
    # The model handed back never carries the secret either.
    assert body not in key.model_dump_json()
    assert keys.authenticate(secret).id == key.id


def test_library_refuses_bad_key_definitions(app: FastAPI) -> None:
    keys: ApiKeys = app.state.engramdb.keys
    for bad in (
        {"scopes": "read,superuser"},
        {"scopes": ""},
        {"name": " "},
        {"tier": "platinum"},
        {"rate_limit": 0},
        {"monthly_quota": -1},
        {"expires_in_days": -1},
        {"expires_at": datetime.now(UTC) - timedelta(seconds=1)},
    ):
        options: dict[str, object] = {"name": "k", **bad}
        with pytest.raises(InvalidInput):
            keys.create("acme", **options)  # type: ignore[arg-type]
    with pytest.raises(AuthenticationError):
        keys.authenticate(KEY_PREFIX + "nothing_" + "x" * 43)


def test_admin_creates_lists_gets_and_revokes_keys_over_http(
    client: TestClient, make_key: MakeKey, pg_url: str
) -> None:
    admin = bearer(make_key("acme", "read,write,admin"))
    resp = client.post(
        "/v1/keys",
        json={"name": "worker", "scopes": ["read", "write"], "rate_limit": 100,
              "monthly_quota": 5000, "expires_in_days": 30},
        headers=admin,
    )  # fmt: skip
    assert resp.status_code == 201, resp.text
    made = resp.json()
    secret, key_id = made["key"], made["id"]
    assert made["api_key"]["id"] == key_id and made["api_key"]["organization_id"] == "acme"
    assert made["api_key"]["rate_limit"] == 100 and made["api_key"]["monthly_quota"] == 5000
    assert "key_hash" not in made["api_key"]
    row = _row(pg_url, key_id)
    assert row["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    expires = row["expires_at"]
    assert isinstance(expires, datetime)
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)

    # The new key works, with its scopes.
    worker = bearer(secret)
    assert client.post("/v1/memories", json={"content": "hi"}, headers=worker).status_code == 201

    # Listed and fetched (by id and by prefix) without the secret.
    listed = client.get("/v1/keys", headers=admin)
    assert listed.status_code == 200
    assert key_id in [k["id"] for k in listed.json()["items"]]
    assert secret not in listed.text and secret.split("_")[-1] not in listed.text
    prefix = made["api_key"]["prefix"]
    assert client.get(f"/v1/keys/{prefix}", headers=admin).json()["id"] == key_id
    assert client.get(f"/v1/keys/{key_id}", headers=admin).json()["prefix"] == prefix
    assert_error(client.get("/v1/keys/edb_zzzzzzzz", headers=admin), 404, "not_found")
    # "edb_" is the start of every key's prefix: ambiguous.
    assert_error(client.get("/v1/keys/edb_", headers=admin), 409, "conflict")

    # Revoked by prefix: the very next request is refused, the key leaves the default listing.
    revoked = client.delete(f"/v1/keys/{prefix}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    err = assert_error(client.get("/v1/memories", headers=worker), 401, "unauthenticated")
    assert "revoked" in err["message"]
    assert key_id not in [k["id"] for k in client.get("/v1/keys", headers=admin).json()["items"]]
    every = client.get("/v1/keys", params={"include_revoked": True}, headers=admin).json()
    assert key_id in [k["id"] for k in every["items"]]


def test_key_listing_is_keyset_paginated(client: TestClient, make_key: MakeKey) -> None:
    admin = bearer(make_key("acme", "admin"))
    made = {client.post("/v1/keys", json={"name": f"k{i}"}, headers=admin).json()["id"]
            for i in range(4)}  # fmt: skip
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/keys", params=params, headers=admin).json()
        assert len(page["items"]) <= 2
        seen += [k["id"] for k in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5 and made <= set(seen)


def test_revoke_by_id_and_revoked_keys_stay_revoked(client: TestClient, make_key: MakeKey) -> None:
    admin = bearer(make_key("acme", "admin"))
    made = client.post("/v1/keys", json={"name": "short-lived"}, headers=admin).json()
    h = bearer(made["key"])
    assert client.get("/v1/memories", headers=h).status_code == 200
    assert client.delete(f"/v1/keys/{made['id']}", headers=admin).status_code == 200
    assert_error(client.get("/v1/memories", headers=h), 401, "unauthenticated")
    # Revocation is final: re-enabling is a conflict.
    resp = client.patch(f"/v1/keys/{made['id']}", json={"enabled": True}, headers=admin)
    assert_error(resp, 409, "conflict")
    assert_error(client.get("/v1/memories", headers=h), 401, "unauthenticated")


def test_disabled_keys_are_refused_until_enabled_again(
    client: TestClient, make_key: MakeKey
) -> None:
    admin = bearer(make_key("acme", "admin"))
    made = client.post("/v1/keys", json={"name": "pausable"}, headers=admin).json()
    h = bearer(made["key"])
    off = client.patch(f"/v1/keys/{made['id']}", json={"enabled": False}, headers=admin)
    assert off.status_code == 200 and off.json()["enabled"] is False
    err = assert_error(client.get("/v1/memories", headers=h), 401, "unauthenticated")
    assert "disabled" in err["message"]
    on = client.patch(f"/v1/keys/{made['id']}", json={"enabled": True, "name": "resumed"},
                      headers=admin)  # fmt: skip
    assert on.json()["enabled"] is True and on.json()["name"] == "resumed"
    assert client.get("/v1/memories", headers=h).status_code == 200
    bad = client.patch(f"/v1/keys/{made['id']}", json={"rate_limit": 0}, headers=admin)
    assert_error(bad, 422, "invalid_input")
    bad = client.patch(f"/v1/keys/{made['id']}", json={"scopes": ["admin"]}, headers=admin)
    assert_error(bad, 422, "invalid_input")


def test_expired_keys_are_refused_on_the_next_request(
    app: FastAPI, client: TestClient, pg_url: str
) -> None:
    keys: ApiKeys = app.state.engramdb.keys
    key, secret = keys.create("acme", name="expiring", scopes="read", expires_in_days=1)
    h = bearer(secret)
    assert client.get("/v1/memories", headers=h).status_code == 200
    # Time passes (the database's clock decides): move the expiry into the past.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = %s", (key.id,)
        )
    err = assert_error(client.get("/v1/memories", headers=h), 401, "unauthenticated")
    assert "expired" in err["message"]
    # And for real, with a key one second from expiry.
    _k, soon = keys.create("acme", name="soon", scopes="read", expires_in_days=1.2 / 86400)
    time.sleep(1.3)
    assert_error(client.get("/v1/memories", headers=bearer(soon)), 401, "unauthenticated")


def test_missing_unknown_and_malformed_credentials_are_401(client: TestClient) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        bearer(KEY_PREFIX + "abcdefgh_" + "x" * 43),
        bearer("not-a-key-nor-a-token"),
    ):
        resp = client.get("/v1/memories", headers=headers)
        assert_error(resp, 401, "unauthenticated")
        assert resp.headers["www-authenticate"].startswith("Bearer")


def test_scopes_are_enforced(client: TestClient, make_key: MakeKey) -> None:
    reader = bearer(make_key("acme", "read"))
    writer = bearer(make_key("acme", "read,write"))
    made = client.post("/v1/memories", json={"content": "Alice likes tea"}, headers=writer)
    assert made.status_code == 201
    mid = made.json()["id"]
    # Reading is fine for a read key …
    assert client.get(f"/v1/memories/{mid}", headers=reader).status_code == 200
    assert (
        client.post("/v1/memories/search", json={"query": "tea"}, headers=reader).status_code == 200
    )
    # … writing is not.
    for resp in (
        client.post("/v1/memories", json={"content": "x"}, headers=reader),
        client.patch(f"/v1/memories/{mid}", json={"content": "y"}, headers=reader),
        client.delete(f"/v1/memories/{mid}", headers=reader),
        client.post("/v1/users", json={"id": "alice"}, headers=reader),
    ):
        err = assert_error(resp, 403, "permission_denied")
        assert err["details"]["required"] == "write"
    # Keys, usage of others and the audit log need admin.
    for resp in (
        client.get("/v1/keys", headers=writer),
        client.post("/v1/keys", json={"name": "escalate", "scopes": ["admin"]}, headers=writer),
        client.delete("/v1/keys/edb_", headers=writer),
        client.get("/v1/audit", headers=writer),
        client.get("/v1/audit", headers=reader),
    ):
        assert_error(resp, 403, "permission_denied")
    assert client.get(f"/v1/memories/{mid}", headers=writer).json()["content"] == "Alice likes tea"


def test_admins_manage_only_their_own_organization(client: TestClient, make_key: MakeKey) -> None:
    acme = bearer(make_key("acme", "admin"))
    globex_key = make_key("globex", "admin")
    # Another organization's key is not found (no existence oracle), and not revocable.
    other = client.get("/v1/keys", headers=bearer(globex_key)).json()["items"][0]
    assert_error(client.get(f"/v1/keys/{other['id']}", headers=acme), 404, "not_found")
    assert_error(client.delete(f"/v1/keys/{other['id']}", headers=acme), 404, "not_found")
    assert_error(client.patch(f"/v1/keys/{other['id']}", json={"enabled": False}, headers=acme),
                 404, "not_found")  # fmt: skip
    assert client.get("/v1/memories", headers=bearer(globex_key)).status_code == 200
    # Naming another organization is for operators (admins of the home organization) only.
    resp = client.post("/v1/keys", json={"name": "x", "organization_id": "globex"}, headers=acme)
    assert_error(resp, 403, "permission_denied")
    assert_error(client.get("/v1/keys", params={"organization_id": "globex"}, headers=acme),
                 403, "permission_denied")  # fmt: skip
    operator = bearer(make_key("default", "admin"))
    made = client.post("/v1/keys", json={"name": "for globex", "organization_id": "globex",
                                         "scopes": ["read"]}, headers=operator)  # fmt: skip
    assert made.status_code == 201 and made.json()["api_key"]["organization_id"] == "globex"
    info = client.get("/v1/info", headers=bearer(made.json()["key"])).json()
    assert info["organization"] == "globex" and info["scopes"] == ["read"]


def test_last_used_at_is_set_by_requests(app: FastAPI, client: TestClient, pg_url: str) -> None:
    key, secret = app.state.engramdb.keys.create("acme", name="fresh", scopes="read")
    assert _row(pg_url, key.id)["last_used_at"] is None
    before = datetime.now(UTC)
    assert client.get("/v1/memories", headers=bearer(secret)).status_code == 200
    used = _row(pg_url, key.id)["last_used_at"]
    assert isinstance(used, datetime) and used >= before - timedelta(seconds=1)
    found = app.state.engramdb.keys.find("acme", key.prefix)
    assert found.last_used_at is not None


def test_library_find_update_and_revoke(app: FastAPI) -> None:
    keys: ApiKeys = app.state.engramdb.keys
    key, _secret = keys.create("acme", name="lib")
    with pytest.raises(NotFound):
        keys.find("globex", str(key.id))
    with pytest.raises(InvalidInput):
        keys.find("acme", "ed")  # too short to be a prefix
    changed = keys.update("acme", key.prefix, {"rate_limit": None, "monthly_quota": 10})
    assert changed.rate_limit is None and changed.monthly_quota == 10
    with pytest.raises(InvalidInput):
        keys.update("acme", key.prefix, {"organization_id": "globex"})
    keys.revoke("acme", str(key.id))
    with pytest.raises(Conflict):
        keys.update("acme", str(key.id), {"name": "again"})
    with pytest.raises(NotFound):
        keys.revoke("acme", str(uuid.uuid4()))


def test_a_deleted_organizations_keys_stop_at_once(client: TestClient, make_key: MakeKey) -> None:
    acme = bearer(make_key("acme", "read,write"))
    assert client.post("/v1/memories", json={"content": "x"}, headers=acme).status_code == 201
    operator = bearer(make_key("default", "admin"))
    assert client.delete("/v1/organizations/acme", headers=operator).status_code == 204
    assert_error(client.get("/v1/memories", headers=acme), 401, "unauthenticated")
    assert_error(client.get("/v1/organizations/acme", headers=operator), 404, "not_found")
