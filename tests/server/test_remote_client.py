"""The remote client against a real server: ``connect("http://…")``, ``connect_async`` and the
native async client, with the library's exceptions (the contract suite covers the methods)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from fastapi import FastAPI

import engramdb
from engramdb.client import AsyncRemoteEngram, connect_remote_async
from engramdb.errors import (
    AuthenticationError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    Unavailable,
)

from .live import LiveServer, server_settings


@pytest.fixture
def server(pg_url: str) -> Iterator[LiveServer]:
    from engramdb.server import create_app

    app = create_app(server_settings(pg_url))
    with LiveServer(app) as live:
        yield live


def _key(server: LiveServer, org: str = "acme", scopes: str = "read,write", **opts: object) -> str:
    app: FastAPI = server.app
    opts.setdefault("tier", "enterprise")
    _k, secret = app.state.engramdb.keys.create(org, name="client", scopes=scopes, **opts)
    return str(secret)


def test_connect_async_over_http_has_the_same_methods_and_errors(server: LiveServer) -> None:
    key = _key(server)

    async def main() -> None:
        db = await engramdb.connect_async(server.url, api_key=key)
        assert db.organization == "acme"
        m = await db.memories.add("Alice prefers window seats", agent_id="travel-bot")
        batch = await db.memories.add_many(
            [{"content": f"fact {i}", "agent_id": "a"} for i in range(3)]
        )
        assert len(batch) == 3
        assert (await db.memories.get(m.id)).content == "Alice prefers window seats"
        hits = await db.memories.search("window seats", agent_id="travel-bot")
        assert hits[0].memory.id == m.id and 0 <= hits[0].score <= 1
        page = await db.memories.list(agent_id="a", limit=2)
        assert len(page.items) == 2 and page.next_cursor
        updated = await db.memories.update(m.id, content="Alice prefers aisle seats")
        assert updated.version == 2 and len(await db.memories.history(m.id)) == 2
        await db.users.add("alice", name="Alice")
        assert (await db.users.get("alice")).name == "Alice"
        with pytest.raises(NotFound):
            await db.memories.get(uuid.uuid4())
        with pytest.raises(InvalidInput):
            await db.memories.add("")
        await db.memories.delete(m.id, purge=True)
        await db.close()

        async with engramdb.connect_async(server.url, api_key=key) as again:
            assert (await again.memories.list(agent_id="travel-bot")).items == []

    asyncio.run(main())


def test_native_async_client(server: LiveServer) -> None:
    key, reader = _key(server), _key(server, scopes="read")

    async def main() -> None:
        db = await connect_remote_async(server.url, api_key=key)
        assert isinstance(db, AsyncRemoteEngram) and db.embedder.dimensions == 64
        m = await db.memories.add("native async", agent_id="a")
        hits = await db.memories.search("native async", agent_id="a")
        assert hits[0].memory.id == m.id
        results = await asyncio.gather(*(db.memories.add(f"concurrent {i}") for i in range(8)))
        assert len({r.id for r in results}) == 8
        await db.close()
        async with await connect_remote_async(server.url, api_key=reader) as ro:
            with pytest.raises(PermissionDenied):
                await ro.memories.add("not allowed")
            assert (await ro.memories.get(m.id)).content == "native async"

    asyncio.run(main())


def test_remote_errors_are_the_library_exceptions(server: LiveServer) -> None:
    with pytest.raises(AuthenticationError):
        engramdb.connect(server.url, api_key="edb_abcdefgh_" + "x" * 43)
    with pytest.raises(AuthenticationError):
        asyncio.run(_open_async(server.url, "edb_abcdefgh_" + "x" * 43))
    with engramdb.connect(server.url, api_key=_key(server, scopes="read")) as ro:
        with pytest.raises(PermissionDenied):
            ro.memories.add("x")
        with pytest.raises(NotFound):
            ro.memories.get(uuid.uuid4())
    limited = _key(server, monthly_quota=2)  # connecting uses one request (/v1/info)
    with engramdb.connect(server.url, api_key=limited) as db:
        db.memories.list()
        with pytest.raises(QuotaExceeded) as caught:
            db.memories.list()
        assert isinstance(caught.value, RateLimited) and caught.value.retry_after > 60


async def _open_async(url: str, key: str) -> None:
    db = await engramdb.connect_async(url, api_key=key)
    await db.close()


def test_an_unreachable_server_is_unavailable(server: LiveServer) -> None:
    key = _key(server)
    db = engramdb.connect(server.url, api_key=key)
    server.stop()
    with pytest.raises(Unavailable):
        db.memories.list()
    db.close()
    with pytest.raises(Unavailable):
        engramdb.connect(server.url, api_key=key)


def test_client_sockets_disable_nagle(server: LiveServer) -> None:
    """Should a request's body go in a second write, Nagle's algorithm would hold it until the
    server acknowledged the headers (a delayed ACK: up to 40 ms on Linux)."""
    import socket

    from engramdb.client.transport import ConnectionPool

    db = engramdb.connect(server.url, api_key=_key(server))
    try:
        db.memories.add("a body large enough to be sent after the headers", agent_id="a")
        assert isinstance(db._http, ConnectionPool)  # type: ignore[attr-defined]
        socks = db._http.idle_sockets()  # type: ignore[attr-defined]
        assert socks and all(
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0 for s in socks
        )
    finally:
        db.close()
