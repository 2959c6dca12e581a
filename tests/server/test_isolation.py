"""Tenant isolation, twice: through the API (a key of one organization reaches nothing of
another: 404, never 403, and nothing in listings or searches) and in PostgreSQL itself
(row-level security, enabled and forced on every tenant table, with the application role)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.rows import dict_row

from engramdb.migrations.rls import ORG_SETTING
from engramdb.server.state import DEFAULT_APP_ROLE

from .conftest import MakeKey, assert_error, bearer, owner_rows

APP_ROLE = DEFAULT_APP_ROLE


@pytest.fixture
def tenants(app: FastAPI, client: TestClient, make_key: MakeKey) -> dict[str, Any]:
    """Two organizations with memories, users, agents and rooms (globex's are the secrets)."""
    out: dict[str, Any] = {}
    for org, word in (("acme", "anvils"), ("globex", "hammocks")):
        h = bearer(make_key(org, "read,write,admin"))
        for resource, body in (
            ("users", {"id": "alice", "name": f"Alice of {org}", "metadata": {"org": org}}),
            ("agents", {"id": "bot", "name": f"{org} bot"}),
            ("rooms", {"id": "lobby", "name": f"{org} lobby"}),
        ):
            assert client.post(f"/v1/{resource}", json=body, headers=h).status_code == 201
        made = client.post(
            "/v1/memories", headers=h,
            json={"content": f"The {org} secret plan involves {word}", "agent_id": "bot",
                  "user_id": "alice", "room_id": "lobby", "tags": ["plan"]},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        notes = client.post("/v1/memories", headers=h, json={"items": [
            {"content": f"{org} note {i} about {word}", "agent_id": "bot"} for i in range(3)]})  # fmt: skip
        first_note = notes.json()["items"][0]["id"]  # an update, so history has rows too
        assert client.patch(f"/v1/memories/{first_note}", headers=h,
                            json={"content": f"{org} note 0 about {word}, revised"}).status_code == 200  # fmt: skip
        out[org] = {"headers": h, "memory": made.json()["id"], "word": word}
    app.state.engramdb.usage.flush()
    return out


def test_a_key_of_one_organization_reaches_nothing_of_another(
    client: TestClient, tenants: dict[str, Any]
) -> None:
    a = tenants["acme"]["headers"]
    theirs = tenants["globex"]["memory"]
    word = tenants["globex"]["word"]

    # Memories: every verb on another tenant's id is "not found", never "forbidden".
    for resp in (
        client.get(f"/v1/memories/{theirs}", headers=a),
        client.get(f"/v1/memories/{theirs}", params={"include_deleted": True}, headers=a),
        client.get(f"/v1/memories/{theirs}/history", headers=a),
        client.patch(f"/v1/memories/{theirs}", json={"content": "hijacked"}, headers=a),
        client.delete(f"/v1/memories/{theirs}", headers=a),
        client.delete(f"/v1/memories/{theirs}", params={"purge": True}, headers=a),
    ):
        assert_error(resp, 404, "not_found")

    # Listings and searches show nothing of theirs, whatever the filter or mode.
    for params in ({}, {"agent_id": "bot"}, {"user_id": "alice"}, {"tags": "plan"},
                   {"include_deleted": True, "limit": 1000}):  # fmt: skip
        listed = client.get("/v1/memories", params=params, headers=a)
        assert listed.status_code == 200
        assert listed.json()["items"], params  # their own memories are there …
        assert word not in listed.text and theirs not in listed.text  # … and only those
    for mode in ("hybrid", "text", "vector"):
        found = client.post("/v1/memories/search", headers=a,
                            json={"query": f"secret plan {word}", "mode": mode, "top_k": 50})  # fmt: skip
        assert found.status_code == 200
        assert word not in found.text and theirs not in found.text, mode

    # Users, agents and rooms: the same ids exist in both organizations, independently.
    for resource, ident in (("users", "alice"), ("agents", "bot"), ("rooms", "lobby")):
        mine = client.get(f"/v1/{resource}/{ident}", headers=a).json()
        assert mine["organization_id"] == "acme" and "globex" not in str(mine)
        listed = client.get(f"/v1/{resource}", headers=a)
        assert {i["organization_id"] for i in listed.json()["items"]} == {"acme"}
        assert "globex" not in listed.text
    assert client.delete("/v1/users/alice", headers=a).status_code == 204
    assert client.patch("/v1/agents/bot", json={"name": "renamed"}, headers=a).status_code == 200

    # Their organization, audit log, usage and keys are out of reach too.
    assert_error(client.get("/v1/organizations/globex", headers=a), 404, "not_found")
    assert_error(client.patch("/v1/organizations/globex", json={"name": "x"}, headers=a),
                 404, "not_found")  # fmt: skip
    for path in ("/v1/audit", "/v1/usage", "/v1/keys"):
        resp = client.get(path, params={"organization_id": "globex"}, headers=a)
        assert_error(resp, 403, "permission_denied")
    assert [o["id"] for o in client.get("/v1/organizations", headers=a).json()["items"]] == ["acme"]
    # Naming another organization in a body is refused, not obeyed.
    smuggled = client.post("/v1/memories", headers=a,
                           json={"content": "planted", "organization_id": "globex"})  # fmt: skip
    assert_error(smuggled, 422, "invalid_input")

    # Nothing of theirs changed.
    b = tenants["globex"]["headers"]
    memory = client.get(f"/v1/memories/{theirs}", headers=b).json()
    assert memory["version"] == 1 and word in memory["content"]
    assert client.get("/v1/users/alice", headers=b).json()["name"] == "Alice of globex"
    assert client.get("/v1/agents/bot", headers=b).json()["name"] == "globex bot"
    hits = client.post("/v1/memories/search", json={"query": "planted"}, headers=b).json()
    assert all("planted" not in h["memory"]["content"] for h in hits["results"])


# -- the same at the SQL level -----------------------------------------------------------------


def _tenant_tables(pg_url: str) -> list[str]:
    """Every table of the schema with an organization_id column (so tables added by later
    migrations are covered without touching this test)."""
    rows = owner_rows(pg_url, """
        SELECT c.relname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'organization_id'
             AND NOT a.attisdropped
        WHERE c.relkind IN ('r', 'p') ORDER BY 1""")  # fmt: skip
    return [r["relname"] for r in rows]


@pytest.fixture
def as_app_role(pg_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A session working as the application role, as the server's connections do."""
    with psycopg.connect(pg_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(APP_ROLE)))
        yield conn


def _count(conn: psycopg.Connection[dict[str, Any]], table: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table))
    ).fetchone()
    assert row is not None
    return int(row["n"])


def test_rls_is_enabled_and_forced_on_every_tenant_table(pg_url: str) -> None:
    tables = _tenant_tables(pg_url)
    # The tables of migrations 0001 and 0002 at least; later ones are found the same way.
    assert {"memories", "memory_history", "users", "agents", "rooms", "api_keys",
            "api_key_counters", "usage_events", "audit_log"} <= set(tables)  # fmt: skip
    flags = {r["relname"]: r for r in owner_rows(pg_url, """
        SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class
        WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')""")}  # fmt: skip
    policies = {(r["tablename"], r["policyname"]): r for r in owner_rows(pg_url, """
        SELECT tablename, policyname, qual, with_check, roles::text[] AS roles
        FROM pg_policies WHERE schemaname = 'public'""")}  # fmt: skip
    for table in [*tables, "organizations"]:
        assert flags[table]["relrowsecurity"], f"{table}: row-level security not enabled"
        assert flags[table]["relforcerowsecurity"], f"{table}: row-level security not forced"
        policy = policies.get((table, "tenant_isolation"))
        assert policy is not None, f"{table}: no tenant_isolation policy"
        assert ORG_SETTING in policy["qual"] and ORG_SETTING in policy["with_check"], table
        assert policy["roles"] == ["public"], table
    # Any other policy is the owner's read-only lookup, never one for the application role.
    for (table, name), policy in policies.items():
        if name != "tenant_isolation":
            assert APP_ROLE not in policy["roles"] and "public" not in policy["roles"], (
                table,
                name,
            )


def test_the_application_role_is_neither_superuser_nor_owner(
    app: FastAPI, pg_url: str, as_app_role: psycopg.Connection[dict[str, Any]]
) -> None:
    role = owner_rows(pg_url, "SELECT * FROM pg_roles WHERE rolname = %s", APP_ROLE)[0]
    assert not role["rolsuper"] and not role["rolbypassrls"]
    assert not role["rolcreaterole"] and not role["rolcreatedb"]
    owned = owner_rows(pg_url, """
        SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
        AND pg_get_userbyid(c.relowner) = %s""", APP_ROLE)  # fmt: skip
    assert owned == []
    # It can neither switch row-level security off nor escape it.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_app_role.execute("ALTER TABLE memories DISABLE ROW LEVEL SECURITY")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_app_role.execute("ALTER TABLE memories NO FORCE ROW LEVEL SECURITY")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_app_role.execute("SET row_security = off; SELECT * FROM memories")
    # The server's own connections work as that role.
    store = app.state.engramdb.engram.engine.store
    with store.pool.connection() as conn:
        row = conn.execute("SELECT current_user, session_user").fetchone()
    assert row is not None and row[0] == APP_ROLE


def test_without_the_setting_the_application_role_sees_and_writes_nothing(
    tenants: dict[str, Any],
    pg_url: str,
    as_app_role: psycopg.Connection[dict[str, Any]],
) -> None:
    tables = _tenant_tables(pg_url)
    seeded = {"memories", "memory_history", "users", "agents", "rooms", "api_keys",
              "api_key_counters", "usage_events", "audit_log"} & set(tables)  # fmt: skip
    with psycopg.connect(pg_url) as owner:  # superuser: sees every row
        for table in seeded:
            row = owner.execute(sql.SQL("SELECT count(DISTINCT organization_id) FROM {}")
                                .format(sql.Identifier(table))).fetchone()  # fmt: skip
            assert row is not None and row[0] >= 2, f"{table} was not seeded for both tenants"
    for table in [*tables, "organizations"]:
        assert _count(as_app_role, table) == 0, table
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        as_app_role.execute("INSERT INTO users (organization_id, id) VALUES ('acme', 'mallory')")
    assert as_app_role.execute("UPDATE memories SET content = 'x'").rowcount == 0
    assert as_app_role.execute("DELETE FROM users").rowcount == 0
    # The setting lasts one transaction only: set it locally, commit, and it is gone.
    with as_app_role.transaction():
        as_app_role.execute("SELECT set_config(%s, 'acme', true)", (ORG_SETTING,))
        assert _count(as_app_role, "memories") > 0
    assert _count(as_app_role, "memories") == 0


def test_with_one_organization_set_only_its_rows_exist(
    tenants: dict[str, Any],
    pg_url: str,
    as_app_role: psycopg.Connection[dict[str, Any]],
) -> None:
    tables = _tenant_tables(pg_url)
    as_app_role.execute("SELECT set_config(%s, 'acme', false)", (ORG_SETTING,))
    for table in tables:
        rows = as_app_role.execute(
            sql.SQL("SELECT DISTINCT organization_id FROM {}").format(sql.Identifier(table))
        ).fetchall()
        assert {r["organization_id"] for r in rows} <= {"acme"}, table
    assert _count(as_app_role, "memories") == 4
    assert [r["id"] for r in as_app_role.execute("SELECT id FROM organizations")] == ["acme"]
    # Writes aimed at the other tenant touch nothing, or are refused.
    theirs = tenants["globex"]["memory"]
    assert as_app_role.execute("UPDATE memories SET content = 'hijacked' WHERE id = %s",
                               (theirs,)).rowcount == 0  # fmt: skip
    assert (
        as_app_role.execute("DELETE FROM memories WHERE organization_id = 'globex'").rowcount == 0
    )
    assert as_app_role.execute("DELETE FROM users WHERE organization_id = 'globex'").rowcount == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        as_app_role.execute("INSERT INTO users (organization_id, id) VALUES ('globex', 'mallory')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        # Moving a row into another tenant is refused by the policy's WITH CHECK.
        as_app_role.execute("UPDATE users SET organization_id = 'globex' WHERE id = 'alice'")
    # The same statement is fine inside its own organization.
    as_app_role.execute("INSERT INTO users (organization_id, id) VALUES ('acme', 'mallory')")
    # A setting naming an organization that does not exist shows nothing at all.
    as_app_role.execute("SELECT set_config(%s, 'nobody', false)", (ORG_SETTING,))
    for table in [*tables, "organizations"]:
        assert _count(as_app_role, table) == 0, table
    # globex is intact.
    memory = owner_rows(pg_url, "SELECT content FROM memories WHERE id = %s", theirs)
    assert memory and "hammocks" in memory[0]["content"]
    assert len(owner_rows(pg_url, "SELECT 1 FROM users WHERE organization_id = 'globex'")) == 1
