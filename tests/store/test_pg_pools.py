"""The store's connection pools hand out the most recently returned connection first
(store/postgres/pools.py): sequential calls stay on one server process however many
connections concurrency opened, where psycopg_pool's own order goes round them; concurrent
callers still each get a connection of their own; pooled connections send TCP keepalives
unless the database URL sets its own."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from engramdb import Settings, connect
from engramdb.embeddings.none import NoEmbedder
from engramdb.store.postgres.pools import (
    KEEPALIVES,
    LifoAsyncConnectionPool,
    LifoConnectionPool,
    pool_kwargs,
)
from tests.conftest import TEST_DIMENSIONS

IDLE = 3  # connections opened at once before the sequential calls


def _backends_in_sequence(pool: ConnectionPool[Any], calls: int) -> list[int]:
    """Open ``IDLE`` connections at once, return them, then the server process of each of
    ``calls`` sequential checkouts."""
    held = [pool.getconn() for _ in range(IDLE)]
    for conn in held:
        pool.putconn(conn)
    seen = []
    for _ in range(calls):
        with pool.connection() as conn:
            seen.append(conn.info.backend_pid)
    return seen


def test_sequential_checkouts_reuse_the_last_connection_where_psycopg_pool_goes_round(
    pg_url: str,
) -> None:
    with ConnectionPool(pg_url, min_size=1, max_size=IDLE, open=True) as fifo:
        round_robin = _backends_in_sequence(fifo, 2 * IDLE)
    # The reference order, so that this test fails if the override stops mattering.
    assert len(set(round_robin)) == IDLE
    with LifoConnectionPool(pg_url, min_size=1, max_size=IDLE, open=True) as lifo:
        reused = _backends_in_sequence(lifo, 2 * IDLE)
        assert lifo.get_stats()["pool_size"] == IDLE  # the others stay, idle, for max_idle
    assert len(set(reused)) == 1


def test_concurrent_checkouts_still_get_a_connection_each(pg_url: str) -> None:
    with LifoConnectionPool(pg_url, min_size=1, max_size=IDLE, open=True) as pool:
        barrier = threading.Barrier(IDLE)
        pids: list[int] = []

        def work() -> None:
            with pool.connection() as conn:
                barrier.wait(timeout=30)  # all IDLE connections out at once
                pids.append(conn.info.backend_pid)

        threads = [threading.Thread(target=work) for _ in range(IDLE)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert len(pids) == IDLE and len(set(pids)) == IDLE


def test_the_store_and_its_async_searches_use_the_lifo_pools(pg_url: str) -> None:
    db = connect(pg_url, embedder=NoEmbedder(TEST_DIMENSIONS), settings=Settings())
    try:
        store: Any = db.engine.store
        assert isinstance(store.pool, LifoConnectionPool)
        held = [store.pool.getconn() for _ in range(IDLE)]
        for conn in held:
            store.pool.putconn(conn)
        query = sql.SQL("SELECT pg_backend_pid() AS pid")
        pids = {store._round_trip(None, query, [])[0]["pid"] for _ in range(2 * IDLE)}
        assert len(pids) == 1

        async def async_pool_kind() -> type:
            await store.open_async()
            try:
                return type(store._async._pool)
            finally:
                await store.close_async()

        assert asyncio.run(async_pool_kind()) is LifoAsyncConnectionPool
    finally:
        db.close()


def test_the_async_pool_reuses_the_last_connection(pg_url: str) -> None:
    async def run() -> list[int]:
        async with LifoAsyncConnectionPool(pg_url, min_size=1, max_size=IDLE, open=False) as pool:
            held = [await pool.getconn() for _ in range(IDLE)]
            for conn in held:
                await pool.putconn(conn)
            seen = []
            for _ in range(2 * IDLE):
                async with pool.connection() as conn:
                    seen.append(conn.info.backend_pid)
            return seen

    assert len(set(asyncio.run(run()))) == 1


def _keepalive_options(dsn: str) -> dict[str, str]:
    return {k: v for k, v in conninfo_to_dict(dsn).items() if k.startswith("keepalives")}


def test_pooled_connections_keep_alive_unless_the_url_says_otherwise(pg_url: str) -> None:
    db = connect(pg_url, embedder=NoEmbedder(TEST_DIMENSIONS), settings=Settings())
    try:
        with db.engine.store.pool.connection() as conn:  # type: ignore[attr-defined]
            assert _keepalive_options(conn.info.dsn) == KEEPALIVES
    finally:
        db.close()
    own = pg_url + ("&" if "?" in pg_url else "?") + "keepalives_idle=30"
    assert not any(k.startswith("keepalives") for k in pool_kwargs(own))
    db = connect(own, embedder=NoEmbedder(TEST_DIMENSIONS), settings=Settings())
    try:
        with db.engine.store.pool.connection() as conn:  # type: ignore[attr-defined]
            assert _keepalive_options(conn.info.dsn) == {"keepalives_idle": "30"}
    finally:
        db.close()
    # A conninfo psycopg cannot read is left for connecting to refuse, as before.
    assert pool_kwargs("postgresql://[not a url")["keepalives"] == "1"
