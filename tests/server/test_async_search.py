"""The server's hot search awaits its statement on the event loop (store/postgres/aio.py):
opened when the server starts, tenant-isolated on its own connections, closed when it stops."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from fastapi import FastAPI

from engramdb import connect
from engramdb.store.postgres import PostgresStore

from .live import TEST_DIMENSIONS, LiveServer


def _metrics(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    return {
        name: float(value)
        for line in text.splitlines()
        if line and not line.startswith("#")
        for name, _, value in [line.rpartition(" ")]
    }


def _vector(seed: int) -> list[float]:
    return [((seed * 5 + i * 11) % 13 - 6) / 6.0 for i in range(TEST_DIMENSIONS)]


def test_hot_searches_run_on_the_loop_and_each_tenant_sees_its_own(
    make_app: Callable[..., FastAPI],
) -> None:
    app = make_app()
    state = app.state.engramdb
    store = state.engram.engine.store
    assert isinstance(store, PostgresStore)
    secrets = {
        org: str(state.keys.create(org, name="t", scopes=["read", "write"], tier="enterprise")[1])
        for org in ("acme", "globex")
    }
    with LiveServer(app) as server:
        assert store._async.is_open  # opened by the server's start
        clients = {org: connect(server.url, api_key=secret) for org, secret in secrets.items()}
        try:
            for org, client in clients.items():
                items = [
                    {
                        "content": f"{org} memory {i}",
                        "user_id": f"u{i % 2}",
                        "embedding": _vector(i),
                    }
                    for i in range(10)
                ]
                client.memories.add_many(items)
            for client in clients.values():  # the first search reads the table's size
                client.memories.search(embedding=_vector(0), mode="vector")
            served = store._async.served
            # The tenants take turns on the asynchronous pool's connections (a pool of four):
            # each search names its own tenant, so none sees the other's memories.
            for i in range(12):
                for org, client in clients.items():
                    hits = client.memories.search(
                        embedding=_vector(i), mode="vector", top_k=5, user_id=f"u{i % 2}"
                    )
                    assert len(hits) == 5
                    assert {h.memory.organization_id for h in hits} == {org}
                    assert all(h.memory.content.startswith(f"{org} ") for h in hits)
                    assert {h.memory.user_id for h in hits} == {f"u{i % 2}"}
            assert store._async.served == served + 24
            # The metrics show the asynchronous pool and the searches it served.
            metrics = _metrics(server.url)
            assert metrics["engramdb_searches_on_loop_total"] == store._async.served
            assert metrics['engramdb_async_pool_connections{state="size"}'] >= 1
            assert metrics['engramdb_pool_connections{state="size"}'] >= 1
        finally:
            for client in clients.values():
                client.close()
    assert not store._async.is_open  # closed by the server's shutdown
