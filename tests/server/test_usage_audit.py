"""Usage metering (every authenticated request, written in batches; /v1/usage totals) and the
audit log (every mutation: who, what, when, ids before and after; /v1/audit for admins)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from fastapi import FastAPI
from fastapi.testclient import TestClient

from engramdb.server.context import estimate_tokens
from engramdb.service.keys import ApiKeys
from engramdb.service.usage import UsageRecorder

from .conftest import MakeKey, assert_error, bearer, owner_rows
from .live import server_settings

JWT_SECRET = server_settings("postgresql://unused").jwt_secret


def _token(sub: str, org: str = "acme", role: str = "authenticated") -> str:
    now = int(time.time())
    claims = {"sub": sub, "role": role, "org_id": org, "iat": now, "exp": now + 600}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def _events(pg_url: str, key_id: object) -> list[dict[str, Any]]:
    return owner_rows(
        pg_url, "SELECT * FROM usage_events WHERE api_key_id = %s ORDER BY created_at", key_id
    )


# -- usage -----------------------------------------------------------------------------------------


def test_every_authenticated_request_is_a_usage_event(
    app: FastAPI, client: TestClient, pg_url: str
) -> None:
    key, secret = app.state.engramdb.keys.create("acme", name="metered", scopes="read,write")
    h = bearer(secret)
    content, query = "Alice likes green tea in the morning", "what does Alice drink"
    made = client.post("/v1/memories", json={"content": content}, headers=h)
    assert made.status_code == 201
    client.get("/v1/memories", params={"limit": 5}, headers=h)
    client.get(f"/v1/memories/{uuid.uuid4()}", headers=h)  # a 404 is metered too
    client.post("/v1/memories/search", json={"query": query}, headers=h)
    client.post("/v1/memories", headers=h,
                json={"content": "my own vector", "embedding": [0.1] * 64})  # fmt: skip
    client.get("/healthz")  # not authenticated: not metered
    client.get("/v1/memories")  # no credentials: nobody to charge
    app.state.engramdb.usage.flush()

    events = _events(pg_url, key.id)
    got = [(e["method"], e["endpoint"], e["status_code"], e["tokens"]) for e in events]
    assert got == [
        ("POST", "/v1/memories", 201, estimate_tokens(content)),
        ("GET", "/v1/memories", 200, 0),
        ("GET", "/v1/memories/{memory_id}", 404, 0),
        ("POST", "/v1/memories/search", 200, estimate_tokens(query)),
        ("POST", "/v1/memories", 201, 0),  # the caller's vector: nothing embedded
    ]
    for e in events:
        assert e["organization_id"] == "acme" and e["subject"] == str(key.id)
        assert 0 < e["latency_ms"] < 60_000
        assert datetime.now(UTC) - e["created_at"] < timedelta(minutes=5)
    assert owner_rows(pg_url, "SELECT count(*) AS n FROM usage_events")[0]["n"] == len(events)


def test_refused_requests_of_a_known_key_are_metered(
    app: FastAPI, client: TestClient, pg_url: str
) -> None:
    keys: ApiKeys = app.state.engramdb.keys
    key, secret = keys.create(
        "acme", name="reader", scopes="read", monthly_quota=1, tier="enterprise"
    )
    h = bearer(secret)
    assert client.get("/v1/memories", headers=h).status_code == 200
    assert client.get("/v1/memories", headers=h).status_code == 429  # over quota
    keys.update("acme", str(key.id), {"monthly_quota": None})
    assert client.post("/v1/memories", json={"content": "x"}, headers=h).status_code == 403
    keys.revoke("acme", str(key.id))
    assert client.get("/v1/memories", headers=h).status_code == 401
    app.state.engramdb.usage.flush()
    assert [e["status_code"] for e in _events(pg_url, key.id)] == [200, 429, 403, 401]


def test_usage_is_written_in_batches_off_the_request_path(app: FastAPI, pg_url: str) -> None:
    store = app.state.engramdb.engram.engine.store
    for org in ("acme", "globex"):
        store.ensure_organization(org)
    recorder = UsageRecorder(store, interval=3600)  # the background thread will not flush
    try:
        for i in range(250):
            recorder.record(organization_id="acme" if i % 2 else "globex", endpoint="/x",
                            method="GET", status_code=200, latency_ms=1.0, subject="s")  # fmt: skip
        assert recorder.pending == 250
        assert owner_rows(pg_url, "SELECT count(*) AS n FROM usage_events")[0]["n"] == 0
        recorder.flush()
        assert recorder.pending == 0
        counts = owner_rows(pg_url, "SELECT organization_id, count(*) AS n FROM usage_events "
                            "GROUP BY 1 ORDER BY 1")  # fmt: skip
        assert [(r["organization_id"], r["n"]) for r in counts] == [("acme", 125), ("globex", 125)]
    finally:
        recorder.close()


def test_a_full_queue_wakes_the_writer(app: FastAPI, pg_url: str) -> None:
    store = app.state.engramdb.engram.engine.store
    store.ensure_organization("acme")
    recorder = UsageRecorder(store, interval=3600, max_pending=20)
    try:
        for _ in range(20):
            recorder.record(organization_id="acme", endpoint="/x", method="GET",
                            status_code=200, latency_ms=1.0)  # fmt: skip
        # The interval is an hour: only the full queue can have woken the writer. `pending`
        # drops when the writer takes the batch, before its insert commits: wait for the rows.
        deadline = time.monotonic() + 10
        written = 0
        while written < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
            written = owner_rows(pg_url, "SELECT count(*) AS n FROM usage_events")[0]["n"]
        assert recorder.pending == 0
        assert written == 20
    finally:
        recorder.close()


def test_usage_reports_totals_per_key_and_month(
    app: FastAPI, client: TestClient, make_key: MakeKey
) -> None:
    keys: ApiKeys = app.state.engramdb.keys
    admin_key, admin_secret = keys.create("acme", name="admin", scopes="admin", tier="enterprise")
    worker_key, worker_secret = keys.create("acme", name="worker", scopes="read,write")
    admin, worker = bearer(admin_secret), bearer(worker_secret)
    for i in range(3):
        client.post("/v1/memories", json={"content": f"memory number {i}"}, headers=worker)
    client.get(f"/v1/memories/{uuid.uuid4()}", headers=worker)  # an error
    client.get("/v1/memories", headers=bearer(make_key("globex")))  # another tenant

    report = client.get("/v1/usage", headers=admin)
    assert report.status_code == 200
    body = report.json()
    assert body["organization_id"] == "acme"
    month = datetime.now(UTC).strftime("%Y-%m")
    by_key = {t["api_key_id"]: t for t in body["totals"]}
    worker_total = by_key[str(worker_key.id)]
    assert worker_total["month"] == month
    assert worker_total["requests"] == 4 and worker_total["errors"] == 1
    assert worker_total["tokens"] == sum(estimate_tokens(f"memory number {i}") for i in range(3))
    assert worker_total["avg_latency_ms"] > 0
    # The report request itself is metered only after it answers; the other tenant is absent.
    assert set(by_key) <= {str(worker_key.id), str(admin_key.id)}

    # A non-admin key sees its own usage only, whatever it asks for.
    own = client.get("/v1/usage", params={"api_key_id": str(admin_key.id)}, headers=worker).json()
    assert {t["api_key_id"] for t in own["totals"]} == {str(worker_key.id)}
    # Admins can narrow to one key and to recent months.
    one = client.get("/v1/usage", params={"api_key_id": str(worker_key.id), "months": 1},
                     headers=admin).json()  # fmt: skip
    assert [t["requests"] for t in one["totals"]] == [5]  # and its own /v1/usage call
    assert_error(client.get("/v1/usage", params={"months": 0}, headers=admin), 422, "invalid_input")


def test_jwt_requests_are_metered_by_subject(client: TestClient, make_key: MakeKey) -> None:
    alice, bob = bearer(_token("alice")), bearer(_token("bob"))
    client.post("/v1/memories", json={"content": "from alice"}, headers=alice)
    client.get("/v1/memories", headers=alice)
    client.get("/v1/memories", headers=bob)
    # A JWT caller without admin sees its own subject's usage only.
    mine = client.get("/v1/usage", headers=alice).json()["totals"]
    assert [(t["subject"], t["requests"], t["api_key_id"]) for t in mine] == [("alice", 2, None)]
    admin = client.get("/v1/usage", headers=bearer(make_key("acme", "admin"))).json()["totals"]
    subjects = {t["subject"]: t["requests"] for t in admin if t["api_key_id"] is None}
    assert subjects == {"alice": 3, "bob": 1}


# -- audit -----------------------------------------------------------------------------------------


def _audit(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """Every entry, page by page (limit 3), newest first."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": 3, **params} | ({"cursor": cursor} if cursor else {})
        resp = client.get("/v1/audit", params=query, headers=headers)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        assert len(page["items"]) <= 3
        out += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return out


def test_every_mutation_is_audited(client: TestClient, app: FastAPI) -> None:
    keys: ApiKeys = app.state.engramdb.keys
    key, secret = keys.create("acme", name="auditor", scopes="admin", tier="enterprise")
    h = bearer(secret)
    actor = f"key:{key.prefix}"
    done: list[tuple[str, str, str | None, str]] = []  # (action, resource type, id, request id)

    def call(method: str, path: str, action: str, rtype: str, rid: str | None, **kw: Any) -> Any:
        resp = client.request(method, path, headers=h, **kw)
        assert resp.status_code < 300, resp.text
        done.append((action, rtype, rid, resp.headers["x-request-id"]))
        return resp.json() if resp.content else None

    one = client.post("/v1/memories", json={"content": "first"}, headers=h)
    mid = one.json()["id"]
    done.append(("create", "memory", mid, one.headers["x-request-id"]))
    call("POST", "/v1/memories", "create", "memory", None,
         json={"items": [{"content": "a"}, {"content": "b"}]})  # fmt: skip
    call("PATCH", f"/v1/memories/{mid}", "update", "memory", mid, json={"content": "second"})
    call("DELETE", f"/v1/memories/{mid}", "delete", "memory", mid)
    call("DELETE", f"/v1/memories/{mid}?purge=true", "purge", "memory", mid)
    call("POST", "/v1/users", "create", "user", "alice", json={"id": "alice"})
    call("PATCH", "/v1/users/alice", "update", "user", "alice", json={"name": "Alice"})
    call("DELETE", "/v1/users/alice", "delete", "user", "alice")
    made = client.post("/v1/keys", json={"name": "child"}, headers=h).json()
    done.append(("create", "api_key", made["id"], ""))
    call(
        "PATCH", f"/v1/keys/{made['id']}", "update", "api_key", made["id"], json={"enabled": False}
    )
    call("DELETE", f"/v1/keys/{made['id']}", "revoke", "api_key", made["id"])
    call("PATCH", "/v1/organizations/acme", "update", "organization", "acme", json={"name": "ACME"})
    # Reads and refused mutations leave no entry.
    client.get("/v1/memories", headers=h)
    client.post("/v1/memories/search", json={"query": "first"}, headers=h)
    assert (
        client.patch(f"/v1/memories/{uuid.uuid4()}", json={"content": "x"}, headers=h).status_code
        == 404
    )
    assert client.post("/v1/memories", json={"content": ""}, headers=h).status_code == 422

    entries = _audit(client, h)
    assert len(entries) == len(done)
    assert len({e["id"] for e in entries}) == len(entries)
    entries.reverse()  # oldest first, like ``done``
    for entry, (action, rtype, rid, request_id) in zip(entries, done, strict=True):
        assert (entry["action"], entry["resource_type"]) == (action, rtype), entry
        assert entry["organization_id"] == "acme"
        assert entry["actor_type"] == "api_key" and entry["actor_id"] == actor
        if rid is not None:
            assert entry["resource_id"] == rid
        if request_id:
            assert entry["request_id"] == request_id
        assert datetime.fromisoformat(entry["created_at"]) > datetime.now(UTC) - timedelta(
            minutes=5
        )
    by_action = {(e["action"], e["resource_type"]): e for e in entries}
    assert by_action[("update", "memory")]["before"] == {"id": mid}
    assert by_action[("update", "memory")]["after"] == {"id": mid, "version": 2}
    assert by_action[("delete", "memory")]["before"] == {"id": mid}
    batch = [e for e in entries if e["action"] == "create" and e["resource_id"] is None]
    assert len(batch) == 1 and len(batch[0]["after"]["ids"]) == 2
    # Filtered by resource.
    memory_entries = _audit(client, h, resource_type="memory", resource_id=mid)
    assert [e["action"] for e in memory_entries] == ["purge", "delete", "update", "create"]


def test_jwt_mutations_name_their_subject(client: TestClient, make_key: MakeKey) -> None:
    h = bearer(_token("alice"))
    client.post("/v1/memories", json={"content": "by alice"}, headers=h)
    [entry] = _audit(client, bearer(make_key("acme", "admin")))
    assert entry["actor_type"] == "jwt" and entry["actor_id"] == "jwt:alice"


def test_audit_is_for_admins_and_per_organization(
    client: TestClient, make_key: MakeKey, make_app: Callable[..., FastAPI]
) -> None:
    acme, globex = bearer(make_key("acme", "admin")), bearer(make_key("globex", "admin"))
    client.post("/v1/memories", json={"content": "acme's"}, headers=acme)
    client.post("/v1/memories", json={"content": "globex's"}, headers=globex)
    assert [e["organization_id"] for e in _audit(client, acme)] == ["acme"]
    assert [e["organization_id"] for e in _audit(client, globex)] == ["globex"]
    assert_error(client.get("/v1/audit", headers=bearer(make_key("acme", "read,write"))), 403,
                 "permission_denied")  # fmt: skip
    # An operator (admin of the home organization) reads any organization's log.
    operator = bearer(make_key("default", "admin"))
    assert [e["organization_id"] for e in _audit(client, operator, organization_id="globex")] == [
        "globex"
    ]
    assert_error(client.get("/v1/audit", params={"cursor": "garbage"}, headers=acme), 400,
                 "invalid_cursor")  # fmt: skip
    assert_error(client.get("/v1/audit", params={"limit": 0}, headers=acme), 422, "invalid_input")


def test_an_add_and_its_audit_entry_are_one_transaction(
    client: TestClient, make_key: MakeKey, pg_url: str
) -> None:
    """One durable commit per add over HTTP, and never a memory without its entry: both rows
    carry the same transaction id (xmin). A duplicate add is audited too, on its own."""
    h = bearer(make_key("default", "read,write"))
    for attempt in range(2):  # the first through FastAPI, the second by the short path
        made = client.post("/v1/memories", json={"content": f"one commit {attempt}"}, headers=h)
        assert made.status_code == 201, made.text
        mid = made.json()["id"]
        [row] = owner_rows(
            pg_url,
            "SELECT (SELECT xmin::text FROM memories WHERE id = %s) AS memory, "
            "(SELECT xmin::text FROM audit_log WHERE resource_id = %s AND action = 'create') "
            "AS entry",
            mid, str(mid),
        )  # fmt: skip
        assert row["memory"] is not None and row["memory"] == row["entry"]
    again = client.post("/v1/memories", json={"content": "one commit 1"}, headers=h)
    assert again.status_code == 201 and again.json()["id"] == mid
    entries = owner_rows(
        pg_url, "SELECT after FROM audit_log WHERE resource_id = %s AND action = 'create'", mid
    )
    assert [e["after"] for e in entries] == [{"id": mid, "version": 1}] * 2


def test_an_update_or_delete_and_its_audit_entry_are_one_transaction(
    client: TestClient, make_key: MakeKey, pg_url: str
) -> None:
    """The same for changes: the memory's new version and the entry share a transaction id,
    as do a soft delete and its entry; a purge's entry is written (its row is gone). An update
    that changes nothing is audited on its own, with the unchanged version."""
    h = bearer(make_key("default", "read,write"))
    mid = client.post("/v1/memories", json={"content": "to change"}, headers=h).json()["id"]

    def same_transaction(action: str) -> None:
        [row] = owner_rows(
            pg_url,
            "SELECT (SELECT xmin::text FROM memories WHERE id = %s) AS memory, "
            "(SELECT xmin::text FROM audit_log WHERE resource_id = %s AND action = %s) AS entry",
            mid, mid, action,
        )  # fmt: skip
        assert row["memory"] is not None and row["memory"] == row["entry"], action

    changed = client.patch(f"/v1/memories/{mid}", json={"content": "changed"}, headers=h)
    assert changed.status_code == 200 and changed.json()["version"] == 2
    same_transaction("update")
    again = client.patch(f"/v1/memories/{mid}", json={"content": "changed"}, headers=h)
    assert again.status_code == 200 and again.json()["version"] == 2
    assert client.delete(f"/v1/memories/{mid}", headers=h).status_code == 204
    same_transaction("delete")
    assert client.delete(f"/v1/memories/{mid}?purge=true", headers=h).status_code == 204
    missing = client.delete(f"/v1/memories/{mid}", headers=h)
    assert missing.status_code == 404
    entries = owner_rows(
        pg_url, "SELECT action, after FROM audit_log WHERE resource_id = %s ORDER BY id", mid
    )
    assert [(e["action"], e["after"]) for e in entries] == [
        ("create", {"id": mid, "version": 1}),
        ("update", {"id": mid, "version": 2}),
        ("update", {"id": mid, "version": 2}),  # nothing changed: audited by the route
        ("delete", None),
        ("purge", None),
    ]
