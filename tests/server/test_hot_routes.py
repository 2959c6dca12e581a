"""``server.hot``: search and add served without FastAPI's machinery answer exactly as the
FastAPI routes do, and leave everything else to them.

Each test runs the same requests against two apps on one database: the server as shipped, and
the same app without the ``HotRoutes`` middleware (every request through FastAPI).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from engramdb.server.hot import HotRoutes

from .conftest import MakeKey, assert_error, bearer, owner_rows
from .live import TEST_DIMENSIONS


def _hot_middleware(app: FastAPI) -> HotRoutes:
    layer: Any = app.middleware_stack
    while layer is not None and not isinstance(layer, HotRoutes):
        layer = getattr(layer, "app", None)
    assert isinstance(layer, HotRoutes), "the app has no HotRoutes layer"
    return layer


@pytest.fixture
def pair(make_app: Callable[..., FastAPI]) -> tuple[TestClient, TestClient, FastAPI]:
    """(client of the shipped app, client of the app without the hot routes, shipped app)."""
    hot = make_app()
    plain = make_app()
    plain.user_middleware = [m for m in plain.user_middleware if m.cls is not HotRoutes]
    hot_client = TestClient(hot, raise_server_exceptions=False)
    plain_client = TestClient(plain, raise_server_exceptions=False)
    hot_client.get("/healthz")  # builds the middleware stack
    plain_client.get("/healthz")
    return hot_client, plain_client, hot


def _vector(seed: int) -> list[float]:
    return [((seed * 7 + i * 13) % 17 - 8) / 8.0 for i in range(TEST_DIMENSIONS)]


def _seed(client: TestClient, secret: str) -> list[str]:
    items = [
        {"content": f"the ferry to island {i} leaves at {6 + i} am", "user_id": f"u{i % 3}",
         "agent_id": "guide", "embedding": _vector(i), "tags": ["travel"] if i % 2 else []}
        for i in range(12)
    ]  # fmt: skip
    resp = client.post("/v1/memories", json={"items": items}, headers=bearer(secret))
    assert resp.status_code == 201, resp.text
    return [m["id"] for m in resp.json()["items"]]


def _post(client: TestClient, path: str, body: Any, secret: str | None, **kw: Any) -> Any:
    headers = bearer(secret) if secret else {}
    if isinstance(body, bytes):
        return client.post(path, content=body, headers={**headers, **kw.get("headers", {})})
    return client.post(path, json=body, headers=headers)


def test_searches_answer_as_the_fastapi_route_does(
    pair: tuple[TestClient, TestClient, FastAPI], make_key: MakeKey
) -> None:
    hot, plain, app = pair
    secret = make_key("default", "read,write")
    _seed(hot, secret)
    hot.post("/v1/memories/search", json={"query": "warm up"}, headers=bearer(secret))
    served = _hot_middleware(app).served
    bodies: list[Any] = [
        {"embedding": _vector(3), "mode": "vector", "top_k": 5},
        {"embedding": _vector(4), "mode": "vector", "user_id": "u1", "explain": True},
        {"query": "ferry island", "mode": "hybrid", "agent_id": "guide", "top_k": 3},
        {"query": "ferry", "mode": "text", "tags": ["travel"]},
        {"embedding": _vector(5), "mode": "vector", "threshold": 0.5, "filters": {"user_id": "u2"}},
        {"query": "ferry", "top_k": 0},  # the library refuses it: 422 invalid_input
        {"mode": "text"},  # text search needs a query: 422 invalid_input
        {"embedding": [1.0, 2.0], "mode": "vector"},  # wrong dimensions: 422
        {"query": "ferry", "top_k": "many"},  # does not validate: FastAPI's 422
        {"query": "ferry", "unknown": 1},  # extra field: FastAPI's 422
    ]
    for body in bodies:
        a = _post(hot, "/v1/memories/search", body, secret)
        b = _post(plain, "/v1/memories/search", body, secret)
        assert a.status_code == b.status_code, (body, a.text, b.text)
        assert a.headers["content-type"] == b.headers["content-type"]
        assert a.json() == b.json(), body
        assert a.headers["x-request-id"]
    # The first seven were served by the hot path; the last two went on to FastAPI.
    assert _hot_middleware(app).served == served + 8


def test_adds_answer_as_the_fastapi_route_does(
    pair: tuple[TestClient, TestClient, FastAPI], make_key: MakeKey, pg_url: str
) -> None:
    hot, plain, app = pair
    secret = make_key("default", "read,write")
    hot.get("/v1/memories", headers=bearer(secret))  # the key is remembered from here on
    plain.get("/v1/memories", headers=bearer(secret))
    served = _hot_middleware(app).served
    volatile = {"id", "created_at", "updated_at", "valid_from", "content_hash"}

    def mine(body: dict[str, Any], who: str) -> dict[str, Any]:
        """The body with ``who`` in each content: the apps share a database, and the same
        memory added twice would be found as a duplicate the second time."""
        if "items" in body:
            return {"items": [mine(i, who) for i in body["items"]]}
        return {**body, "content": f"{body['content']} {who}"} if body["content"].strip() else body

    def rows(resp: Any, who: str) -> list[dict[str, Any]]:
        found = resp.json()
        return [
            {k: (v.replace(f" {who}", "") if k == "content" else v)
             for k, v in r.items() if k not in volatile}
            for r in found.get("items", [found])
        ]  # fmt: skip

    for body in [
        {"content": "one", "user_id": "u1", "embedding": _vector(1), "importance": 0.9},
        {"content": "two", "kind": "fact", "metadata": {"source": "chat"}},
        {"items": [{"content": f"batch {n}", "agent_id": "a"} for n in range(3)]},
        {"content": "   "},  # empty content: the library's 422
        {"items": [{"content": "ok"}, {"content": "bad", "importance": 7}]},  # FastAPI's 422
        {"content": "no", "embedding": [0.0] * 3},  # wrong dimensions: the library's 422
    ]:
        a = _post(hot, "/v1/memories", mine(body, "hot"), secret)
        b = _post(plain, "/v1/memories", mine(body, "plain"), secret)
        assert a.status_code == b.status_code, (a.text, b.text)
        if a.status_code == 201:
            assert rows(a, "hot") == rows(b, "plain")
        else:
            assert a.json() == b.json()
    assert _hot_middleware(app).served == served + 5
    # A hot add is audited like any other, with its request id.
    rows = owner_rows(
        pg_url,
        "SELECT request_id FROM audit_log WHERE action = 'create' AND resource_id IS NOT NULL",
    )
    assert rows and all(r["request_id"] for r in rows)


def test_what_the_hot_path_does_not_serve_goes_to_fastapi(
    pair: tuple[TestClient, TestClient, FastAPI], make_key: MakeKey
) -> None:
    hot, plain, app = pair
    writer = make_key("default", "read,write")
    reader = make_key("default", "read")
    for c in (hot, plain):
        c.get("/v1/memories", headers=bearer(reader))
    layer = _hot_middleware(app)
    served = layer.served
    cases: list[tuple[Any, str | None, dict[str, str]]] = [
        (b"{not json", writer, {"content-type": "application/json"}),  # 400, FastAPI
        (json.dumps({"query": "x"}).encode(), writer, {"content-type": "text/plain"}),
        ({"query": "ferry"}, None, {}),  # no credentials: 401
        ({"query": "ferry"}, "edb_not_a_key_of_this_server", {}),  # unknown key: 401
    ]
    for body, secret, headers in cases:
        a = _post(hot, "/v1/memories/search", body, secret, headers=headers)
        b = _post(plain, "/v1/memories/search", body, secret, headers=headers)
        assert (a.status_code, a.json()) == (b.status_code, b.json()), (body, a.text)
    assert layer.served == served
    # A remembered key without the scope is refused by the hot path as FastAPI refuses it.
    a = _post(hot, "/v1/memories", {"content": "nope"}, reader)
    b = _post(plain, "/v1/memories", {"content": "nope"}, reader)
    assert_error(a, 403, "permission_denied")
    assert a.json() == b.json()
    assert layer.served == served + 1


def test_hot_requests_are_metered_once_and_named_by_their_route(
    pair: tuple[TestClient, TestClient, FastAPI], make_key: MakeKey, pg_url: str
) -> None:
    hot, _plain, app = pair
    state = app.state.engramdb
    admin = make_key("default", "read,write,admin")
    secret = make_key("default", "read,write")
    hot.get("/v1/memories", headers=bearer(secret))
    served = _hot_middleware(app).served
    for i in range(5):
        body = {"embedding": _vector(i), "mode": "vector"}
        assert hot.post("/v1/memories/search", json=body, headers=bearer(secret)).status_code == 200
    assert _hot_middleware(app).served == served + 5
    state.usage.flush()
    key_id = state.keys.lookup_cached(secret)
    assert key_id is not None  # (this lookup is counted too, after the flush above)
    rows = owner_rows(
        pg_url,
        "SELECT endpoint, count(*) AS n FROM usage_events WHERE api_key_id = %s GROUP BY endpoint",
        key_id.key.id,
    )
    assert {r["endpoint"]: r["n"] for r in rows} == {"/v1/memories": 1, "/v1/memories/search": 5}
    metrics = hot.get("/metrics", headers=bearer(admin)).text
    assert 'route="/v1/memories/search"' in metrics


def test_hot_requests_meter_the_tokens_they_embed(
    pair: tuple[TestClient, TestClient, FastAPI], make_key: MakeKey, pg_url: str
) -> None:
    """The embedder runs in a worker thread and charges the request's context: the short path
    must carry that context into the thread, or the tokens would be lost."""
    from engramdb.server.context import estimate_tokens

    hot, _plain, app = pair
    state = app.state.engramdb
    secret = make_key("default", "read,write")
    hot.get("/v1/memories", headers=bearer(secret))  # the key is remembered from here on
    served = _hot_middleware(app).served
    content, query = "Bob drinks his coffee black", "how does Bob take his coffee"
    made = hot.post("/v1/memories", json={"content": content}, headers=bearer(secret))
    assert made.status_code == 201, made.text
    found = hot.post("/v1/memories/search", json={"query": query}, headers=bearer(secret))
    assert found.status_code == 200, found.text
    assert _hot_middleware(app).served == served + 2
    state.usage.flush()
    use = state.keys.lookup_cached(secret)
    assert use is not None
    rows = owner_rows(
        pg_url,
        "SELECT method, endpoint, tokens FROM usage_events WHERE api_key_id = %s "
        "AND method = 'POST' ORDER BY created_at",
        use.key.id,
    )
    assert [(r["endpoint"], r["tokens"]) for r in rows] == [
        ("/v1/memories", estimate_tokens(content)),
        ("/v1/memories/search", estimate_tokens(query)),
    ]
