"""Connection pools that hand out the most recently returned connection first.

psycopg_pool queues idle connections first in, first out: sequential calls on a pool of N
connections go round the N, each statement landing on the server process that has waited
longest, its caches cold. Measured on the benchmark machine (2 cores, durable single-row
inserts into a 10,000-memory store, two idle connections taking turns with one): about
0.3-0.4 ms more per insert going round two connections than always on the same one, where
psycopg_pool's own bookkeeping cost nothing measurable. PgBouncer reuses server connections
last in, first out by default for the same reason.

Last in, first out also leaves the connections that concurrency opened idle once it
passes, so the pool's ``max_idle`` closes them, where going round the queue kept them all in
use. The connection closed when the pool shrinks is the one idle longest, as before.

psycopg_pool has no option for the order: its idle connections are a deque taken from the
left under the pool's lock (``_get_ready_connection``). Before each take the most recently
returned connection (the right end) is rotated to the left; the others keep their order.
tests/store/test_pg_pools.py checks the order, so a psycopg_pool that changes its internals
fails there rather than silently going back to the round.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from psycopg import AsyncConnection, Connection
from psycopg_pool import AsyncConnectionPool, ConnectionPool

__all__ = ["LifoAsyncConnectionPool", "LifoConnectionPool"]


def _most_recent_first(idle: deque[Any]) -> None:
    if len(idle) > 1:
        idle.rotate(1)


class LifoConnectionPool(ConnectionPool[Connection[Any]]):
    """A :class:`psycopg_pool.ConnectionPool` taking the most recently returned connection."""

    def _get_ready_connection(self, timeout: float | None) -> Connection[Any] | None:
        _most_recent_first(self._pool)
        return super()._get_ready_connection(timeout)


class LifoAsyncConnectionPool(AsyncConnectionPool[AsyncConnection[Any]]):
    """The same for :class:`psycopg_pool.AsyncConnectionPool` (the server's searches)."""

    async def _get_ready_connection(self, timeout: float | None) -> AsyncConnection[Any] | None:
        _most_recent_first(self._pool)
        return await super()._get_ready_connection(timeout)
