"""``DELETE /v1/organizations/{id}?purge=true``: an operator forgets a tenant, through the real
app working as the application role (row-level security in force)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.model.test_cascades import _agent_world

from .conftest import MakeKey, assert_error, bearer, owner_rows
from .live import server_settings

Counts = dict[tuple[str, str], int]

JWT_SECRET = server_settings("postgresql://unused").jwt_secret


def _token(org: str) -> str:
    now = int(time.time())
    claims = {"sub": "u1", "role": "authenticated", "org_id": org, "iat": now, "exp": now + 600}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def _counts(pg_url: str) -> Counts:
    """Rows per (table, organization) of every table with an organization_id column."""
    tables = [r["table_name"] for r in owner_rows(
        pg_url,
        "SELECT c.table_name FROM information_schema.columns c "
        "JOIN information_schema.tables s USING (table_schema, table_name) "
        "WHERE c.column_name = 'organization_id' AND c.table_schema = 'public' "
        "AND s.table_type = 'BASE TABLE'",
    )]  # fmt: skip
    out: Counts = {}
    for table in tables:
        for r in owner_rows(
            pg_url, f'SELECT organization_id, count(*) AS n FROM "{table}" GROUP BY 1'
        ):
            out[(table, r["organization_id"])] = r["n"]
    return out


def _of(counts: Counts, org: str, *, without: tuple[str, ...] = ()) -> Counts:
    return {k: n for k, n in counts.items() if k[1] == org and k[0] not in without}


def _fill_over_http(client: TestClient, h: dict[str, str]) -> None:
    """Writes through the API: usage, rate-limit windows and audit entries of the caller."""
    made = client.post("/v1/memories", json={"content": "our launch date is secret"}, headers=h)
    assert made.status_code == 201, made.text
    mid = made.json()["id"]
    assert client.patch(f"/v1/memories/{mid}", json={"content": "it moved"}, headers=h).is_success
    assert client.post("/v1/users", json={"id": "carol"}, headers=h).status_code == 201
    assert client.post("/v1/memories/search", json={"query": "launch"}, headers=h).is_success


def test_an_operator_purges_a_tenant_and_only_it(
    app: FastAPI, client: TestClient, make_key: MakeKey, pg_url: str
) -> None:
    state = app.state.engramdb
    operator = bearer(make_key("default", "admin"))
    tenants = {org: bearer(make_key(org, "read,write,admin")) for org in ("acme", "globex")}
    for org, h in tenants.items():
        _agent_world(state.view(org, "test"))  # something in every table of the data model
        _fill_over_http(client, h)
    state.usage.flush()
    # The searches' access counts too: written later by the background flush, they would land
    # between the two counts below.
    state.engram.flush()
    before = _counts(pg_url)
    assert len(_of(before, "acme")) >= 20 and _of(before, "acme").keys() >= {
        ("api_keys", "acme"), ("api_key_counters", "acme"), ("usage_events", "acme"),
        ("audit_log", "acme"), ("memory_history", "acme"), ("memories", "acme"),
    }  # fmt: skip
    # acme's last requests are still queued for metering when the purge comes.
    assert client.get("/v1/memories", headers=tenants["acme"]).status_code == 200
    assert state.usage.pending >= 1

    resp = client.delete("/v1/organizations/acme", params={"purge": "true"}, headers=operator)
    assert resp.status_code == 204, resp.text
    state.usage.flush()  # acme's queued events are dropped; nobody else's are

    after = _counts(pg_url)
    assert _of(after, "acme") == {}
    assert _of(after, "globex") == _of(before, "globex")
    metering = ("usage_events", "api_key_counters", "audit_log")  # the operator's own requests
    assert _of(after, "default", without=metering) == _of(before, "default", without=metering)
    assert after[("usage_events", "default")] > before.get(("usage_events", "default"), 0)
    assert owner_rows(pg_url, "SELECT 1 FROM organizations WHERE id = 'acme'") == []

    assert_error(client.get("/v1/memories", headers=tenants["acme"]), 401, "unauthenticated")
    assert_error(client.get("/v1/organizations/acme", headers=operator), 404, "not_found")
    assert client.get("/v1/memories", headers=tenants["globex"]).json()["items"]
    # The purge is on record in the operator's organization (acme's own log went with it).
    entries = client.get(
        "/v1/audit", params={"resource_type": "organization", "resource_id": "acme"},
        headers=operator,
    ).json()["items"]  # fmt: skip
    assert [(e["action"], e["organization_id"], e["request_id"]) for e in entries] == [
        ("purge", "default", resp.headers["x-request-id"])
    ]
    assert entries[0]["actor_id"].startswith("key:")


def test_who_may_purge_and_the_status_codes(
    client: TestClient, make_key: MakeKey, pg_url: str
) -> None:
    operator = bearer(make_key("default", "admin"))
    tenant_admin = bearer(make_key("acme", "admin"))
    home_writer = bearer(make_key("default", "read,write"))
    purge = {"purge": "true"}

    def delete(org: str, headers: dict[str, str] | None) -> Any:
        return client.delete(f"/v1/organizations/{org}", params=purge, headers=headers or {})

    assert_error(delete("acme", None), 401, "unauthenticated")
    assert_error(delete("acme", tenant_admin), 403, "permission_denied")  # not an operator
    assert_error(delete("acme", home_writer), 403, "permission_denied")  # not an admin
    assert_error(delete("default", operator), 409, "conflict")
    assert_error(delete("nobody", operator), 404, "not_found")
    assert_error(delete("bad!id", operator), 422, "invalid_input")
    assert_error(client.delete("/v1/organizations/acme", params={"purge": "maybe"},
                               headers=operator), 422, "invalid_input")  # fmt: skip
    assert owner_rows(pg_url, "SELECT 1 FROM api_keys WHERE organization_id = 'acme'")
    # A soft-deleted organization can still be purged; after that it is gone.
    assert client.delete("/v1/organizations/acme", headers=operator).status_code == 204
    assert owner_rows(pg_url, "SELECT 1 FROM organizations WHERE id = 'acme'")
    assert delete("acme", operator).status_code == 204
    assert owner_rows(pg_url, "SELECT 1 FROM organizations WHERE id = 'acme'") == []
    assert_error(delete("acme", operator), 404, "not_found")


def test_an_operator_cannot_purge_its_own_home(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(organization="ops")
    client = TestClient(app, raise_server_exceptions=False)
    _key, secret = app.state.engramdb.keys.create("ops", name="op", scopes="admin")
    operator = bearer(secret)
    err = assert_error(
        client.delete("/v1/organizations/ops", params={"purge": "true"}, headers=operator),
        409, "conflict",
    )  # fmt: skip
    assert "calls from" in err["message"]
    assert client.get("/v1/info", headers=operator).status_code == 200


def test_a_purged_organization_named_by_a_token_starts_over_empty(
    client: TestClient, make_key: MakeKey
) -> None:
    token = bearer(_token("acme"))
    assert client.post("/v1/memories", json={"content": "acme's secret"}, headers=token).is_success
    operator = bearer(make_key("default", "admin"))
    assert client.delete("/v1/organizations/acme?purge=true", headers=operator).status_code == 204
    # Unlike a soft delete, nothing is left to refuse the token with: the identity provider
    # still vouches for acme, so acme starts again as a new organization, without its past.
    listed = client.get("/v1/memories", headers=token)
    assert listed.status_code == 200 and listed.json()["items"] == []


def test_the_purge_is_in_openapi(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/organizations/{org_id}"]["delete"]
    [param] = [p for p in op["parameters"] if p["name"] == "purge"]
    assert param["in"] == "query" and param["schema"]["type"] == "boolean"
    assert "for good" in param["description"]
    assert {"204", "401", "403", "404", "409"} <= set(op["responses"])
