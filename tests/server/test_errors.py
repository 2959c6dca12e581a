"""The error shape for the statuses test_api.py does not reach: 400 on other routes, 409, 503
when the database is gone; every one without internals."""

from __future__ import annotations

import psycopg
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict

from engramdb.embedded import EmbeddedPostgres

from .conftest import MakeKey, assert_error, bearer


def test_bad_requests_are_400(client: TestClient, make_key: MakeKey) -> None:
    h = {**bearer(make_key()), "Content-Type": "application/json"}
    assert_error(client.post("/v1/keys", content=b"{name: 1}", headers=h), 400, "bad_request")
    assert_error(client.patch("/v1/users/alice", content=b"[", headers=h), 400, "bad_request")
    resp = client.get("/v1/memories", params={"cursor": "not-a-cursor"}, headers=h)
    assert_error(resp, 400, "invalid_cursor")
    # A cursor from another listing is refused too, not misread.
    page = client.get("/v1/keys", params={"limit": 1}, headers=h).json()
    client.post("/v1/keys", json={"name": "second"}, headers=h)
    cursor = client.get("/v1/keys", params={"limit": 1}, headers=h).json()["next_cursor"]
    assert page["items"] and cursor
    resp = client.get("/v1/memories", params={"cursor": cursor}, headers=h)
    assert_error(resp, 400, "invalid_cursor")


def test_non_finite_numbers_in_a_body_are_invalid_input(
    client: TestClient, make_key: MakeKey
) -> None:
    """``NaN`` is not JSON, but Python's parser (and the server's) read it: the library then
    refuses the vector, as in-process, and nothing is written."""
    h = {**bearer(make_key()), "Content-Type": "application/json"}
    dims = client.get("/v1/info", headers=h).json()["embedder"]["dimensions"]
    vector = ",".join(["NaN"] + ["0.5"] * (dims - 1))
    body = f'{{"content": "x", "embedding": [{vector}]}}'.encode()
    assert_error(client.post("/v1/memories", content=body, headers=h), 422, "invalid_input")
    body = f'{{"embedding": [{vector.replace("NaN", "Infinity")}], "mode": "vector"}}'.encode()
    assert_error(client.post("/v1/memories/search", content=body, headers=h), 422,
                 "invalid_input")  # fmt: skip
    assert client.get("/v1/memories", headers=h).json()["items"] == []


def test_wrong_json_types_are_422(client: TestClient, make_key: MakeKey) -> None:
    h = bearer(make_key())
    assert_error(client.post("/v1/memories", json=["a list"], headers=h), 422, "invalid_input")
    assert_error(client.post("/v1/keys", json={"name": 7}, headers=h), 422, "invalid_input")
    assert_error(client.get("/v1/memories", params={"limit": "many"}, headers=h), 422,
                 "invalid_input")  # fmt: skip


def test_conflicts_are_409(client: TestClient, make_key: MakeKey) -> None:
    operator = bearer(make_key("default", "admin"))
    made = client.post("/v1/organizations", json={"id": "acme", "name": "ACME"}, headers=operator)
    assert made.status_code == 201
    again = client.post("/v1/organizations", json={"id": "acme"}, headers=operator)
    err = assert_error(again, 409, "conflict")
    assert err["details"] == {"id": "acme"}


def test_database_gone_is_503_and_liveness_stays_up(
    client: TestClient, pg_url: str, pg_server: EmbeddedPostgres
) -> None:
    assert client.get("/readyz").status_code == 200
    with psycopg.connect(pg_server.admin_url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {conninfo_to_dict(pg_url)['dbname']} WITH (FORCE)")
    resp = client.get("/readyz")
    err = assert_error(resp, 503, "unavailable")
    assert "not reachable" in err["message"]
    assert client.get("/healthz").json() == {"status": "ok"}
