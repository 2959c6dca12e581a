"""The HTTP API itself: health, OpenAPI, metrics, memories routes, the error shape and limits."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
from fastapi import FastAPI
from fastapi.testclient import TestClient

from engramdb.migrations import runner

from .conftest import MakeKey, bearer


def _count(pg_url: str, table: str = "memories") -> int:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "schema": runner.head()}


def test_readiness_is_503_when_the_schema_is_behind(client: TestClient, pg_url: str) -> None:
    runner.downgrade(lambda: psycopg.connect(pg_url), "postgresql", "0001")
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "migration_required"
    assert client.get("/healthz").status_code == 200


def test_openapi_documents_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/v1/memories", "/v1/memories/search", "/v1/memories/{memory_id}",
                 "/v1/memories/{memory_id}/history", "/v1/keys", "/v1/keys/{key}", "/v1/usage",
                 "/v1/audit", "/v1/organizations", "/v1/organizations/{org_id}", "/v1/users",
                 "/v1/agents/{item_id}", "/v1/rooms", "/v1/info", "/healthz", "/readyz"):  # fmt: skip
        assert path in paths, path
    for path, ops in paths.items():
        for method, op in ops.items():
            assert op.get("summary"), (method, path)
            if path.startswith("/v1/"):
                assert "401" in op["responses"] and "422" in op["responses"], (method, path)
    schemas = spec["components"]["schemas"]
    assert {"Memory", "SearchBody", "ApiKeyCreate", "ErrorBody", "AuditEntry"} <= set(schemas)


def test_metrics_count_requests(client: TestClient, make_key: MakeKey) -> None:
    key = make_key()
    client.get("/v1/memories", headers=bearer(key))
    text = client.get("/metrics").text
    assert 'engramdb_http_requests_total{method="GET",route="/v1/memories",status="200"}' in text
    assert "engramdb_pool_connections" in text


def test_memories_round_trip_over_http(client: TestClient, make_key: MakeKey) -> None:
    h = bearer(make_key())
    one = client.post("/v1/memories", json={"content": "Alice likes tea", "agent_id": "bot"},
                      headers=h)  # fmt: skip
    assert one.status_code == 201
    mid = one.json()["id"]
    many = client.post("/v1/memories", headers=h,
                       json={"items": [{"content": f"fact {i}", "agent_id": "bot"} for i in range(5)]})  # fmt: skip
    assert many.status_code == 201 and len(many.json()["items"]) == 5
    page = client.get("/v1/memories", params={"agent_id": "bot", "limit": 4}, headers=h).json()
    assert len(page["items"]) == 4 and page["next_cursor"]
    rest = client.get("/v1/memories", params={"agent_id": "bot", "limit": 4,
                                              "cursor": page["next_cursor"]}, headers=h).json()  # fmt: skip
    assert len(rest["items"]) == 2 and rest["next_cursor"] is None
    patched = client.patch(f"/v1/memories/{mid}", json={"content": "Alice likes green tea"},
                           headers=h)  # fmt: skip
    assert patched.json()["version"] == 2
    hist = client.get(f"/v1/memories/{mid}/history", headers=h).json()["items"]
    assert [v["event"] for v in hist] == ["update", "current"]
    hits = client.post("/v1/memories/search", json={"query": "green tea", "top_k": 3},
                       headers=h).json()["results"]  # fmt: skip
    assert hits[0]["memory"]["id"] == mid and 0 <= hits[0]["score"] <= 1
    filtered = client.get("/v1/memories", headers=h,
                          params={"filters": '{"content": {"$exists": true}}'})  # fmt: skip
    assert filtered.status_code == 422 and filtered.json()["error"]["code"] == "invalid_filter"
    assert client.delete(f"/v1/memories/{mid}", headers=h).status_code == 204
    gone = client.get(f"/v1/memories/{mid}", headers=h)
    assert gone.status_code == 404
    assert set(gone.json()["error"]) == {"code", "message", "details"}
    assert client.delete(f"/v1/memories/{mid}?purge=true", headers=h).status_code == 204


def test_malformed_json_is_400_and_nothing_written(
    client: TestClient, make_key: MakeKey, pg_url: str
) -> None:
    h = {**bearer(make_key()), "Content-Type": "application/json"}
    resp = client.post("/v1/memories", content=b'{"content": "x",', headers=h)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "bad_request"
    assert _count(pg_url) == 0


def test_invalid_body_is_422_with_details(
    client: TestClient, make_key: MakeKey, pg_url: str
) -> None:
    h = bearer(make_key())
    resp = client.post("/v1/memories", json={"content": "x", "kind": "Not A Kind"}, headers=h)
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["code"] == "invalid_input" and err["details"]["errors"][0]["field"].endswith("kind")
    resp = client.post("/v1/memories", json={"items": [{"content": "ok"}, {"contnt": "typo"}]},
                       headers=h)  # fmt: skip
    assert resp.status_code == 422 and resp.json()["error"]["details"]["index"] == 1
    resp = client.post("/v1/memories/search", json={"query": "x", "top_k": "many"}, headers=h)
    assert resp.status_code == 422
    assert _count(pg_url) == 0


def _chunks(total: int) -> Iterator[bytes]:
    yield b'{"content": "'
    for _ in range(total // 1000):
        yield b"x" * 1000
    yield b'"}'


def test_oversized_bodies_are_413_and_nothing_written(
    make_app: Callable[..., FastAPI], pg_url: str
) -> None:
    app = make_app(max_body_bytes=4000)
    client = TestClient(app, raise_server_exceptions=False)
    _k, secret = app.state.engramdb.keys.create("default", name="t", scopes="read,write")
    h = {**bearer(secret), "Content-Type": "application/json"}
    declared = client.post("/v1/memories", json={"content": "x" * 5000}, headers=h)
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "limit_exceeded"
    streamed = client.post("/v1/memories", content=_chunks(6000), headers=h)  # no length
    assert streamed.status_code == 413
    assert client.post("/v1/memories", json={"content": "small"}, headers=h).status_code == 201
    assert _count(pg_url) == 1


def test_content_over_the_library_limit_is_413(client: TestClient, make_key: MakeKey) -> None:
    resp = client.post("/v1/memories", json={"content": "x" * 40_000}, headers=bearer(make_key()))
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "limit_exceeded"


def test_unknown_routes_and_methods_use_the_error_shape(client: TestClient) -> None:
    resp = client.get("/v1/nothing-here")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    resp = client.put("/v1/memories")
    assert resp.status_code == 405 and resp.json()["error"]["code"] == "method_not_allowed"


def test_unexpected_errors_are_500_without_a_stack_trace(app: FastAPI) -> None:
    def boom() -> None:
        raise RuntimeError("secret internals at /srv/engramdb/app.py line 42")

    app.add_api_route("/boom", boom)
    resp = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert resp.status_code == 500
    body = resp.json()
    assert body["error"]["code"] == "backend_error"
    assert "secret internals" not in resp.text and "Traceback" not in resp.text
    assert body["error"]["details"]["request_id"] == resp.headers["x-request-id"]


def test_info_describes_the_server_and_the_caller(client: TestClient, make_key: MakeKey) -> None:
    info = client.get("/v1/info", headers=bearer(make_key("acme", "read"))).json()
    assert info["organization"] == "acme"
    assert info["scopes"] == ["read"]
    assert info["embedder"]["dimensions"] == 64
    assert "memories" in info["resources"]
