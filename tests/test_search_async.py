"""``Memories.search_async``: the same hits as ``search`` on every local backend, the statement
awaited on the loop where the PostgreSQL store opened its asynchronous path, and everything
that may block run in a thread, never on the loop."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from engramdb import Engram, InvalidInput
from engramdb.store.postgres import PostgresStore
from tests.conftest import open_backend

#: (search options, served on the loop when the asynchronous path is open).
SEARCHES: list[tuple[dict[str, Any], bool]] = [
    ({"mode": "vector"}, True),
    ({"mode": "vector", "user_id": "u1"}, True),
    ({"mode": "vector", "agent_id": "a0", "top_k": 5}, True),  # configurations remembered
    ({"mode": "vector", "filters": {"metadata.n": {"$lt": 30}}, "threshold": 0.1}, True),
    ({"mode": "vector", "exact": False, "ef_search": 64, "explain": True}, True),
    ({"query": "topic 3", "mode": "text"}, True),  # words only: nothing to embed
    ({"query": "topic 2", "mode": "hybrid"}, True),  # the vector is given: nothing to embed
    ({"query": "topic 1", "mode": "hybrid", "embedding": None}, False),  # embedded in a thread
]


def _load(db: Engram) -> np.ndarray:
    rng = np.random.default_rng(5)
    dim = db.embedder.dimensions
    items = [
        {"content": f"memory {i} about topic {i % 5}", "agent_id": f"a{i % 3}",
         "user_id": f"u{i % 4}", "metadata": {"n": i}, "embedding": rng.standard_normal(dim).tolist()}
        for i in range(80)
    ]  # fmt: skip
    db.memories.add_many(items)
    return rng.standard_normal(dim)


def _ids_and_scores(hits: list[Any]) -> list[tuple[Any, float, dict[str, float]]]:
    return [(h.memory.id, round(h.score, 6), h.scores) for h in hits]


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_search_async_finds_what_search_finds(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = open_backend(backend, request, tmp_path)
    try:
        q = _load(db).tolist()
        # The first search reads the table's size, which the loop's path leaves to a thread.
        db.memories.search(embedding=q, mode="vector")
        store = db.engine.store
        postgres = isinstance(store, PostgresStore)

        async def run() -> None:
            opened = await store.open_async()
            assert opened is postgres  # SQLite has no asynchronous path to open
            try:
                for options, on_loop in SEARCHES:
                    kw = {"embedding": q, **options}
                    served = store._async.served if postgres else 0
                    got = await db.memories.search_async(**kw)
                    want = db.memories.search(**kw)
                    assert got, options
                    assert _ids_and_scores(got) == _ids_and_scores(want), options
                    assert [h.memory for h in got] == [h.memory for h in want], options
                    if postgres:
                        assert store._async.served == served + int(on_loop), options
                # Agents' configurations not remembered (their time is up): read in a thread,
                # then remembered again.
                db.engine.config_snapshots.clear()
                kw = {"embedding": q, "mode": "vector", "agent_id": "a1"}
                for on_loop in (False, True):
                    served = store._async.served if postgres else 0
                    got = await db.memories.search_async(**kw)
                    assert _ids_and_scores(got) == _ids_and_scores(db.memories.search(**kw))
                    if postgres:
                        assert store._async.served == served + int(on_loop)
            finally:
                if opened:
                    await store.close_async()

        asyncio.run(run())
    finally:
        db.close()


def test_search_async_refuses_what_search_refuses(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = open_backend("postgres", request, tmp_path)
    try:
        q = _load(db).tolist()

        async def run() -> None:
            assert await db.engine.store.open_async()
            try:
                with pytest.raises(InvalidInput):
                    await db.memories.search_async(embedding=q, top_k=0)
                with pytest.raises(InvalidInput):
                    await db.memories.search_async(mode="text")
                with pytest.raises(TypeError):
                    await db.memories.search_async(embedding=q, no_such_option=1)
            finally:
                await db.engine.store.close_async()

        asyncio.run(run())
    finally:
        db.close()


def test_the_asynchronous_path_serves_only_the_loop_that_opened_it(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Asynchronous connections belong to one loop: a search on another loop runs in a
    thread, with the same hits."""
    db = open_backend("postgres", request, tmp_path)
    try:
        q = _load(db).tolist()
        store = db.engine.store
        assert isinstance(store, PostgresStore)
        opened = threading.Event()
        done = threading.Event()

        async def owner() -> None:
            assert await store.open_async()
            assert not await store.open_async()  # open already: this call opens nothing
            opened.set()
            while not done.is_set():
                await asyncio.sleep(0.01)
            await store.close_async()

        thread = threading.Thread(target=asyncio.run, args=(owner(),))
        thread.start()
        try:
            assert opened.wait(30)
            got = asyncio.run(db.memories.search_async(embedding=q, mode="vector"))
            assert store._async.served == 0
            assert _ids_and_scores(got) == _ids_and_scores(
                db.memories.search(embedding=q, mode="vector")
            )
        finally:
            done.set()
            thread.join(30)
        assert not store._async.is_open
    finally:
        db.close()


def test_closing_the_store_closes_connections_left_open(
    request: pytest.FixtureRequest, tmp_path: Path, pg_url: str
) -> None:
    """A store closed while its asynchronous path is still open (close_async never awaited,
    the loop gone) still closes those connections."""
    db = open_backend("postgres", request, tmp_path)
    q = _load(db).tolist()
    store = db.engine.store
    assert isinstance(store, PostgresStore)
    with psycopg.connect(pg_url, autocommit=True) as watcher:

        def backends() -> int:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            ).fetchone()
            assert row is not None
            return int(row[0])

        async def use() -> None:
            assert await store.open_async()
            await db.memories.search_async(embedding=q, mode="vector")
            assert store._async.served == 1

        db.memories.search(embedding=q, mode="vector")  # reads the table's size
        before = backends()
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(use())
            assert backends() > before  # the asynchronous pool's connections
        finally:
            # Closed with the loop stopped and close_async never awaited: only the
            # synchronous close() is left, as when a process's loop dies first.
            db.close()
            pending = asyncio.all_tasks(loop)  # the pool's workers, which this test owns
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()
        assert not store._async.is_open
        deadline = time.monotonic() + 10
        while backends() and time.monotonic() < deadline:  # backends end just after
            time.sleep(0.05)
        assert backends() == 0


def test_the_async_face_awaits_searches_on_its_loop(pg_url: str) -> None:
    """``connect_async`` opens the asynchronous path on its loop and closes it with itself;
    ``await db.memories.search`` is search_async there."""
    from engramdb import Settings, connect_async
    from engramdb.embeddings.hashing import HashEmbedder
    from tests.conftest import TEST_DIMENSIONS

    async def run() -> None:
        async with connect_async(
            pg_url, embedder=HashEmbedder(TEST_DIMENSIONS), settings=Settings()
        ) as db:
            store = db.sync.engine.store
            assert isinstance(store, PostgresStore) and store._async.is_open
            q = (await asyncio.to_thread(_load, db.sync)).tolist()
            await db.memories.search(embedding=q, mode="vector")  # reads the table's size
            served = store._async.served
            hits = await db.memories.search(embedding=q, mode="vector", user_id="u2")
            assert store._async.served == served + 1
            assert _ids_and_scores(hits) == _ids_and_scores(
                db.sync.memories.search(embedding=q, mode="vector", user_id="u2")
            )
            view = await db.for_organization("acme")  # a view shares the path, never closes it
            await view.close()
            assert store._async.is_open
        assert not store._async.is_open

    asyncio.run(run())
