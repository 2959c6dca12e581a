"""The HTTP server on a SQLite file: keys, the memory API through the remote client, rate
limits, usage and audit (the full server suite runs on PostgreSQL, in tests/server)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import engramdb
from engramdb import connect
from engramdb.server import create_app
from tests.server.live import LiveServer, admin_key, server_settings


def test_server_on_sqlite(tmp_path: Path) -> None:
    app = create_app(server_settings(f"sqlite:///{tmp_path / 'server.db'}"))
    with LiveServer(app) as server:
        secret = admin_key(app)
        db = connect(server.url, api_key=secret)
        try:
            m = db.memories.add("Alice prefers window seats", agent_id="bot", user_id="alice")
            assert [h.memory.id for h in db.memories.search("window seats")] == [m.id]
            db.memories.update(m.id, content="Alice prefers aisle seats")
            assert [v.event for v in db.memories.history(m.id)] == ["update", "current"]
            assert [x.id for x in db.memories.list(agent_id="bot").items] == [m.id]
            db.memories.delete(m.id, purge=True)
            with pytest.raises(engramdb.NotFound):
                db.memories.get(m.id)
        finally:
            db.close()

        auth = {"Authorization": f"Bearer {secret}"}
        with httpx.Client(base_url=server.url, headers=auth) as http:
            made = http.post("/v1/keys", json={"name": "tight", "scopes": ["read"],
                                               "rate_limit": 2, "organization_id": "acme"})  # fmt: skip
            assert made.status_code == 201, made.text
            tight = {"Authorization": f"Bearer {made.json()['key']}"}
            codes = [http.get("/v1/memories", headers=tight).status_code for _ in range(3)]
            assert codes == [200, 200, 429]
            assert (
                http.get("/v1/memories", headers={"Authorization": "Bearer nope"}).status_code
                == 401
            )

            usage = http.get("/v1/usage").json()
            assert sum(t["requests"] for t in usage["totals"]) >= 6  # the admin key's calls
            actions = {e["action"] for e in http.get("/v1/audit").json()["items"]}
            assert {"create", "update", "purge"} <= actions
            revoked = http.delete(
                f"/v1/keys/{made.json()['id']}", params={"organization_id": "acme"}
            )
            assert revoked.status_code in (200, 204), revoked.text
            assert http.get("/v1/memories", headers=tight).status_code == 401
