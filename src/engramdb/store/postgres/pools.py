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
use. The connection closed when the pool shrinks is the one idle longest, as before. Spare
connections now sit idle for minutes, where a NAT or firewall may drop a silent connection
(some cloud NAT gateways after 350 s): pooled connections send TCP keepalives after 60 s of
silence unless the database URL sets its own (:func:`pool_kwargs`).

psycopg_pool has no option for the order: its idle connections are a deque taken from the
left under the pool's lock (``_get_ready_connection``). Before each take the most recently
returned connection (the right end) is rotated to the left; the others keep their order.
tests/store/test_pg_pools.py checks the order, so a psycopg_pool that changes its internals
fails there rather than silently going back to the round.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import psycopg
from psycopg import AsyncConnection, Connection
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, ConnectionPool

__all__ = ["KEEPALIVES", "LifoAsyncConnectionPool", "LifoConnectionPool", "pool_kwargs"]

#: libpq's TCP keepalive options for pooled connections (ignored on Unix sockets).
KEEPALIVES = {
    "keepalives": "1",
    "keepalives_idle": "60",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}


def pool_kwargs(url: str) -> dict[str, Any]:
    """The connection options of the store's pools: autocommit (explicit transactions come
    from ``_tx``; a pipeline without one is one implicit transaction ending at its Sync),
    statements prepared from their second run, and :data:`KEEPALIVES` where ``url`` names no
    keepalive option of its own."""
    try:
        given = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        given = {}  # not a valid conninfo: connecting reports it, as it always has
    keepalives = {} if any(k in given for k in KEEPALIVES) else KEEPALIVES
    return {"prepare_threshold": 2, "autocommit": True, **keepalives}


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
