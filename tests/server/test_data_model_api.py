"""The data model over raw HTTP: status codes, the error shape, scopes, nothing half-written, and
the OpenAPI document; and the native async client on the same routes."""

from __future__ import annotations

import asyncio

from fastapi.testclient import TestClient

import engramdb
from engramdb.client import connect_remote_async
from engramdb.surface import ROUTES

from .conftest import MakeKey, bearer
from .live import start_http_backend


def test_openapi_documents_the_data_model(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for routes in ROUTES.values():
        for route in routes:
            op = spec["paths"][route.path][route.verb.lower()]
            assert op["summary"] == route.summary
            assert {"401", "422"} <= set(op["responses"])
            assert {p["name"] for p in op.get("parameters", []) if p["in"] == "path"} == set(
                route.path_params
            )
    listing = spec["paths"]["/v1/messages"]["get"]
    kinds = {p["name"]: p["schema"]["type"] for p in listing["parameters"]}
    assert (kinds["limit"], kinds["newest_first"], kinds["role"]) == ("integer", "boolean", "array")
    assert (
        "Block" in spec["components"]["schemas"] and "PageOf_Goal_" in spec["components"]["schemas"]
    )


def test_codes_and_the_error_shape(client: TestClient, make_key: MakeKey) -> None:
    h = bearer(make_key())
    made = client.post("/v1/blocks", json={"label": "human", "value": "Alice", "limit": 10,
                                           "agent_id": "bot"}, headers=h)  # fmt: skip
    assert made.status_code == 201
    block = made.json()
    over = client.post(f"/v1/blocks/{block['id']}/append", json={"text": "x" * 20}, headers=h)
    assert over.status_code == 413
    assert over.json()["error"]["code"] == "limit_exceeded"
    assert over.json()["error"]["details"]["limit"] == 10
    assert client.get(f"/v1/blocks/{block['id']}", headers=h).json()["value"] == "Alice"
    bad_enum = client.post("/v1/goals", json={"name": "g", "status": "sleeping"}, headers=h)
    assert bad_enum.status_code == 422 and bad_enum.json()["error"]["code"] == "invalid_input"
    assert client.get("/v1/goals", headers=h).json()["items"] == []
    unknown = client.get("/v1/messages?room_id=r&colour=red", headers=h)
    assert unknown.status_code == 422 and "colour" in unknown.json()["error"]["message"]
    not_bool = client.get("/v1/messages?room_id=r&newest_first=perhaps", headers=h)
    assert not_bool.status_code == 422
    not_int = client.get("/v1/messages?room_id=r&limit=many", headers=h)
    assert not_int.status_code == 422
    clash = client.post(f"/v1/blocks/{block['id']}/append",
                        json={"block_id": block["id"], "text": "x"}, headers=h)  # fmt: skip
    assert clash.status_code == 422
    not_object = client.post("/v1/goals", json=["g"], headers=h)
    assert not_object.status_code == 422
    missing = client.get("/v1/goals/0190d3f0-0000-7000-8000-000000000000", headers=h)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert client.get("/v1/goals/not-a-uuid", headers=h).status_code == 422
    dup = client.put(f"/v1/blocks/{block['id']}/agents/bot", headers=h)
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "conflict"
    assert client.get("/v1/agents/bot/blocks/render", headers=h).json() == {
        "text": '<human characters="5/10">\nAlice\n</human>'
    }
    assert client.get("/v1/decisions/summary", headers=h).json() == {"items": []}
    assert client.delete(f"/v1/blocks/{block['id']}/agents/bot", headers=h).status_code == 204
    assert client.get("/v1/agents/bot/blocks", headers=h).json() == {"items": []}
    assert client.get("/v1/goals").status_code == 401


def test_scopes(client: TestClient, make_key: MakeKey) -> None:
    reader = bearer(make_key(scopes="read"))
    assert client.get("/v1/goals", headers=reader).status_code == 200
    refused = client.post("/v1/goals", json={"name": "g"}, headers=reader)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert client.delete("/v1/agents/bot/config", headers=reader).status_code == 403
    writer = bearer(make_key(scopes="read,write"))
    assert client.post("/v1/goals", json={"name": "g"}, headers=writer).status_code == 201
    assert len(client.get("/v1/goals", headers=reader).json()["items"]) == 1


def test_writes_are_audited(client: TestClient, make_key: MakeKey) -> None:
    h = bearer(make_key())
    goal = client.post("/v1/goals", json={"name": "g", "objectives": ["a"]}, headers=h).json()
    client.post(f"/v1/goals/{goal['id']}/objective", json={"objective": 0}, headers=h)
    entries = client.get("/v1/audit", headers=h).json()["items"]
    assert {("add", goal["id"]), ("set_objective", goal["id"])} <= {
        (e["action"], e["resource_id"]) for e in entries if e["resource_type"] == "goal"
    }


def test_native_async_client(pg_url: str) -> None:
    server, key = start_http_backend(pg_url)
    try:

        async def run() -> None:
            adb = await connect_remote_async(server.url, api_key=key)
            try:
                g = await adb.goals.add("ship", objectives=["write", "test"], agent_id="bot")
                g = await adb.goals.set_objective(g.id, "write")
                assert [o.completed for o in g.objectives] == [True, False]
                m = await adb.messages.add("user", "the release is on Friday", agent_id="bot")
                hits = await adb.messages.search("release Friday", agent_id="bot", mode="text")
                assert [h.message.id for h in hits] == [m.id]
                try:
                    await adb.blocks.add("human", "x" * 50, limit=10)
                except engramdb.LimitExceeded as exc:
                    assert exc.details["limit"] == 10
                else:
                    raise AssertionError("an over-limit block was accepted")
            finally:
                await adb.close()

        asyncio.run(run())
    finally:
        server.stop()
