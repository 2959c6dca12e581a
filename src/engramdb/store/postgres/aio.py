"""A search's statement awaited on an event loop: the server's hot search, without a thread.

The library's search is synchronous, so the server ran each one in a worker thread, and the
hop into the thread and back cost about 0.1 to 0.2 ms of a search over HTTP on the benchmark
machine (2 cores). Here the statement goes through an asynchronous connection instead, and the
event loop waits on its socket as on any other I/O: the same statement, sent and decoded by the
same code as the synchronous path (``PostgresStore.search_statement`` and ``search_hits``),
with the same session tracking (session.py), on connections configured the same way.

Asynchronous connections belong to the loop that made them, so this pool is opened on one loop
(the server's, when it starts serving) and closed there (when it stops). ``search`` answers
``None``, and the caller runs the synchronous search in a thread, whenever this path cannot
serve a search without blocking or without that loop: the pool is not open, the running loop
is another one, or the statement needs something the store has not read yet (the vector
space's index, the table's size). PostgreSQL's generic estimate of a filter's rows, which the
statement needs once per filter shape (plans.py), is read here, on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import tuple_row
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool

from ...models.common import dumps_json, loads_json
from ..base import RawHit, SearchSpec
from .errors import translate_errors
from .plans import GENERIC_PLAN_SINCE, estimate_statement
from .pools import LifoAsyncConnectionPool, pool_kwargs
from .session import Sessions, pairs, set_config_sql, split_settings
from .vectors import register_numpy_dumper

if TYPE_CHECKING:
    from .store import PostgresStore

__all__ = ["AsyncSearches"]

log = logging.getLogger(__name__)


class _NotKnown(Exception):
    """The statement needs PostgreSQL's generic estimate of ``where``, not yet read."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


class AsyncSearches:
    """The PostgreSQL store's asynchronous search path (see the module's docstring)."""

    def __init__(self, store: PostgresStore, sessions: Sessions, max_size: int) -> None:
        self._store = store
        self._sessions = sessions
        self._max_size = max_size
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Every connection configured, so a store closed without ``close`` still closes them.
        self._connections: weakref.WeakSet[AsyncConnection[Any]] = weakref.WeakSet()
        #: Searches served here rather than in a thread (read by the tests).
        self.served = 0

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    def stats(self) -> dict[str, int] | None:
        """The pool's statistics (psycopg_pool's ``get_stats``), ``None`` while closed."""
        pool = self._pool
        return None if pool is None else dict(pool.get_stats())

    async def open(self) -> bool:
        """Open the pool on the running loop; ``False`` if it was open already (on this loop or
        another: one loop at a time), and whoever opened it closes it."""
        if self._pool is not None:
            return False
        pool: AsyncConnectionPool[AsyncConnection[Any]] = LifoAsyncConnectionPool(
            self._store.url,
            min_size=1,
            max_size=self._max_size,
            kwargs=pool_kwargs(self._store.url),  # as the synchronous pool's
            configure=self._configure,
            name="engramdb-async",
            open=False,
        )
        try:
            with translate_errors():
                await pool.open(wait=True, timeout=30)
        except BaseException:
            await pool.close()  # its workers and any connection made before the failure
            raise
        self._pool, self._loop = pool, asyncio.get_running_loop()
        return True

    async def close(self) -> None:
        pool, self._pool, self._loop = self._pool, None, None
        if pool is not None:
            await pool.close()

    def abandon(self) -> None:
        """Close the connections from synchronous code (the store closing while the pool is
        still open, its loop perhaps gone): each one's socket, without its loop."""
        self._pool, self._loop = None, None
        for conn in list(self._connections):
            if not conn.closed:
                conn.pgconn.finish()

    async def _configure(self, conn: AsyncConnection[Any]) -> None:
        from pgvector.psycopg import register_vector_async

        await register_vector_async(conn)
        register_numpy_dumper(conn)
        set_json_loads(loads_json, conn)
        set_json_dumps(dumps_json, conn)
        query, params, role = self._store.session_setup()
        cur = await conn.execute(query, params)
        row = await cur.fetchone()
        assert row is not None
        if role is not None:
            await conn.execute(role)
        self._store.session_configured(conn, row)
        self._connections.add(conn)

    async def search(self, org: str, spec: SearchSpec) -> list[RawHit] | None:
        """``PostgresStore.search_memories`` on the running loop, or ``None`` when it cannot be
        done here (see the module's docstring)."""
        if self._pool is None or asyncio.get_running_loop() is not self._loop:
            return None
        store = self._store
        if spec.embedding is not None and not store.index_known(len(spec.embedding), spec.metric):
            return None
        table_rows = store.known_table_rows()
        if table_rows is None:
            return None

        def generic_rows(where: str) -> float:
            rows = store.known_generic_rows(where)
            if rows is None:
                raise _NotKnown(where)
            return rows

        while True:
            try:
                statement = store.search_statement(org, spec, lambda: table_rows, generic_rows)
                break
            except _NotKnown as missing:  # a filter's estimate, read here (once per shape)
                await self._generic_rows(org, missing.where)
        if statement is None:
            return []
        rows = await self._round_trip(
            org, statement.query, statement.params, statement.local, prepare=statement.prepare
        )
        self.served += 1
        return store.search_hits(statement, rows)

    async def _generic_rows(self, org: str, where: str) -> None:
        """``PostgresStore.generic_rows`` on an asynchronous connection."""
        assert self._pool is not None
        explained = None
        with translate_errors():
            async with self._pool.connection() as conn:
                if conn.info.server_version >= GENERIC_PLAN_SINCE:
                    send = self._sessions.changes(conn, split_settings(org, None)[0])
                    try:
                        if send:
                            await conn.execute(set_config_sql(len(send), 0), pairs(send))
                            self._sessions.committed(conn, send)
                        cur = conn.cursor(row_factory=tuple_row)
                        # Never prepared, as in PostgresStore.generic_rows.
                        await cur.execute(estimate_statement(where), prepare=False)
                        row = await cur.fetchone()
                        explained = None if row is None else row[0]
                    except psycopg.Error as exc:
                        self._sessions.forget(conn)
                        log.warning("no generic estimate for a search's filter: %s", exc)
        self._store.remember_generic_rows(where, explained)

    async def _round_trip(
        self,
        org: str,
        query: sql.SQL,
        params: Sequence[Any],
        local: Mapping[str, str],
        *,
        prepare: bool,
    ) -> list[tuple[Any, ...]]:
        """``PostgresStore._round_trip`` on an asynchronous connection (rows as tuples)."""
        assert self._pool is not None
        sessions = self._sessions
        wanted, txlocal = split_settings(org, local)
        with translate_errors():
            async with self._pool.connection() as conn:
                send = sessions.changes(conn, wanted)
                cur = conn.cursor(row_factory=tuple_row)
                try:
                    if send or txlocal:
                        async with conn.pipeline():
                            await conn.execute(
                                set_config_sql(len(send), len(txlocal)), pairs(send, txlocal)
                            )
                            await cur.execute(query, params, prepare=prepare)
                    else:
                        await cur.execute(query, params, prepare=prepare)
                    res = cur.pgresult
                    rows = await cur.fetchall() if res is not None and res.nfields else []
                except BaseException:
                    sessions.forget(conn)
                    raise
                sessions.committed(conn, send)
                return rows
