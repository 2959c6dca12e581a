"""PostgreSQL + pgvector store: pooled connections, every statement's tenant setting, memories.

Its parts: the writes of memories (ingest.py), searches (search.py), a memory's row (rows.py),
embedding spaces' indexes (spaces.py), other resources (resources.py), tenancy and security
(security.py); this module holds the connections and the reads and changes of one memory.

Round trips are the unit of cost here. Pooled connections are in autocommit mode, so a pipeline
of statements up to one Sync runs as one implicit transaction: a single ``add()`` or a search is
one round trip (its settings, when the connection's session holds others: session.py, then the
statement), and batches go through binary COPY.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import RowFactory, dict_row
from psycopg.types.json import Jsonb, set_json_dumps, set_json_loads
from psycopg_pool import ConnectionPool

from ...errors import ConfigurationError, MigrationRequired, NotFound
from ...migrations import runner
from ...models import Memory, MemoryVersion, utcnow
from ...models.common import dumps_json, loads_json
from ...models.security import AuditEntry
from ...settings import Settings
from ..base import (
    AuditChanged,
    Capabilities,
    MemoryQuery,
    RawHit,
    SearchSpec,
)
from .aio import AsyncSearches
from .compile import compile_query
from .errors import translate_errors
from .ingest import IngestMixin
from .notify import KeyChangeListener
from .pools import LifoConnectionPool, pool_kwargs
from .resources import PostgresResources
from .rows import MEMORY_FIELDS, cols, to_memory
from .search import SearchMixin, TtlCache
from .security import AUDIT_INSERT, SecurityMixin, audit_values
from .session import ORG_SETTING, TRACKED, Sessions, pairs, set_config_sql, split_settings
from .spaces import MAX_INDEXED_DIMENSIONS, index_ddl, index_name
from .vectors import register_numpy_dumper

__all__ = ["PostgresStore"]

log = logging.getLogger(__name__)

MIN_SERVER_VERSION = 150000
MIN_PGVECTOR = (0, 7)


def default_pool_size() -> int:
    """Connections worth having on this machine: PostgreSQL's usual 2 x cores (+2 for waits on
    I/O and commits), and at least 4 so a few concurrent writers share commits (group commit)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(4, 2 * cores + 2)


class PostgresStore(SearchMixin, IngestMixin, SecurityMixin, PostgresResources):
    """Store over a PostgreSQL ≥ 15 with pgvector ≥ 0.7."""

    dialect = "postgresql"
    capabilities = Capabilities(row_level_security=True)

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.settings = settings
        self._pool: ConnectionPool | None = None
        #: (dimensions, metric) -> type of its HNSW index ("vector"/"halfvec"), None: no index.
        self._spaces: dict[tuple[int, str], str | None] = {}
        #: filter -> whether it matches few enough rows for exact search (see search_memories).
        self._plans = TtlCache(settings.search_plan_cache_seconds)
        #: a filter's condition (its text) -> PostgreSQL's generic estimate of its rows (plans.py).
        self._generic_rows = TtlCache(max(settings.search_plan_cache_seconds, 1))
        # The table's size, for the HNSW candidate list; sizes drift slowly.
        self._table_rows = TtlCache(max(settings.search_plan_cache_seconds, 1), size=1)
        #: Whether memory_access's statistics are large enough to stop refreshing them (0007).
        self._access_stats_settled = False
        #: What each pooled connection's session has set (tenant, search knobs): session.py.
        self._sessions = Sessions()
        #: The asynchronous search path (aio.py), opened by open_async on the server's loop.
        self._async = AsyncSearches(self, self._sessions, self._pool_max_size())
        #: API key change notices, started by the first watch_api_keys (the server's).
        self._listener: KeyChangeListener | None = None
        self._listener_lock = threading.Lock()
        if settings.vector_type not in MAX_INDEXED_DIMENSIONS:
            raise ConfigurationError(
                f"vector_type must be one of {sorted(MAX_INDEXED_DIMENSIONS)}; "
                f"got {settings.vector_type!r}"
            )

    # -- lifecycle ---------------------------------------------------------------------------

    def connect_raw(self) -> psycopg.Connection[Any]:
        """A plain connection outside the pool (migrations, maintenance)."""
        with translate_errors():
            return psycopg.connect(self.url)

    def open(self, *, migrate: bool) -> PostgresStore:
        self._check_server()
        if migrate:
            with translate_errors():
                runner.upgrade(self.connect_raw, self.dialect)
        else:
            current, head = self.schema_status()
            if current != head:
                raise MigrationRequired(
                    f"the database schema is at {current or 'nothing'} but this engramdb needs "
                    f"{head}: run `engramdb db upgrade`",
                    details={"current": current, "head": head},
                )
        s = self.settings
        self._pool = LifoConnectionPool(
            self.url,
            min_size=s.pool_min_size,
            max_size=self._pool_max_size(),
            kwargs=pool_kwargs(self.url),
            configure=self._configure,
            name="engramdb",
            open=False,
        )
        with translate_errors():
            self._pool.open(wait=True, timeout=30)
        return self

    def _pool_max_size(self) -> int:
        s = self.settings
        return s.pool_max_size or max(default_pool_size(), s.pool_min_size)

    async def open_async(self) -> bool:
        """Open the asynchronous search path on the running loop (aio.py): the server's."""
        return await self._async.open()

    async def close_async(self) -> None:
        await self._async.close()

    def async_stats(self) -> tuple[dict[str, int] | None, int]:
        """The asynchronous pool's statistics (``None`` while closed) and how many searches it
        served, for the server's metrics."""
        return self._async.stats(), self._async.served

    async def search_memories_async(self, org: str, spec: SearchSpec) -> list[RawHit] | None:
        """:meth:`search_memories` awaited on the loop that opened the asynchronous path, or
        ``None`` when it cannot be served there without blocking (aio.py)."""
        return await self._async.search(org, spec)

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        from pgvector.psycopg import register_vector

        register_vector(conn)
        register_numpy_dumper(conn)
        # A memory row has two JSON columns; pydantic-core reads each about 5 µs faster, and
        # writes each several times faster than json.dumps.
        set_json_loads(loads_json, conn)
        set_json_dumps(dumps_json, conn)
        query, params, role = self.session_setup()
        row = conn.execute(query, params).fetchone()
        assert row is not None
        if role is not None:
            conn.execute(role)
        conn.commit()
        self.session_configured(conn, row)

    def session_configured(self, conn: Any, row: Sequence[Any]) -> None:
        """``conn`` ran :meth:`session_setup`'s statement, which answered ``row``."""
        self._sessions.configured(conn, dict(zip(TRACKED, row[-len(TRACKED) :], strict=True)))

    def session_setup(self) -> tuple[sql.Composed, list[str], sql.Composed | None]:
        """How a new connection is configured, for this pool and the asynchronous one (aio.py):
        the statement setting its session defaults and answering the tracked settings' values
        (for :meth:`session_configured`), its parameters, and the ``SET ROLE`` to run next, if
        any. The server works as a role that is neither superuser nor owner, so row-level
        security is really in force; migrations and DDL use connect_raw() (the owner)."""
        s = self.settings
        # Session defaults: relaxed iterative scans keep filtered HNSW searches complete. No
        # parallel workers: engramdb's statements touch an index range or a bounded set of
        # rows (searches at most exact_search_max_rows, or an index walk), where starting
        # workers costs more than it saves; a session default, not one more setting sent with
        # every search.
        defaults = {
            ORG_SETTING: "",  # no tenant: no row is visible until a statement names one
            "hnsw.ef_search": str(s.hnsw_ef_search),
            "hnsw.iterative_scan": "relaxed_order",
            "statement_timeout": str(s.statement_timeout_ms),
            "max_parallel_workers_per_gather": "0",
        }
        if s.hnsw_max_scan_tuples is not None:
            defaults["hnsw.max_scan_tuples"] = str(s.hnsw_max_scan_tuples)
        if s.hnsw_scan_mem_multiplier is not None:
            defaults["hnsw.scan_mem_multiplier"] = str(s.hnsw_scan_mem_multiplier)
        # The tracked settings' values as configured (the server's own for the planner's), which
        # a statement not naming them gets back (session.py).
        query = sql.SQL("SELECT {}").format(
            sql.SQL(", ").join(
                [sql.SQL("set_config(%s, %s, false)") for _ in defaults]
                + [sql.SQL("current_setting(%s)") for _ in TRACKED]
            )
        )
        role = sql.SQL("SET ROLE {}").format(sql.Identifier(s.app_role)) if s.app_role else None
        return query, [*pairs(defaults), *TRACKED], role

    def _check_server(self) -> None:
        with self.connect_raw() as conn:
            version = int(conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
            if version < MIN_SERVER_VERSION:
                raise ConfigurationError(
                    f"engramdb needs PostgreSQL 15 or newer; this server is {version // 10000}",
                    details={"server_version_num": version},
                )
            row = conn.execute(
                "SELECT default_version, installed_version FROM pg_available_extensions "
                "WHERE name = 'vector'"
            ).fetchone()
            if row is None:
                raise ConfigurationError(
                    "the pgvector extension is not available on this PostgreSQL server: install "
                    "pgvector 0.7 or newer (e.g. `apt install postgresql-17-pgvector`, or enable "
                    "'vector' on your managed database), or use the embedded database",
                )
            have = row[1] or row[0]
            parts = tuple(int(p) for p in str(have).split(".")[:2])
            if parts < MIN_PGVECTOR:
                raise ConfigurationError(
                    f"pgvector {have} is too old: engramdb needs 0.7 or newer "
                    "(ALTER EXTENSION vector UPDATE after upgrading the package)",
                    details={"pgvector": have},
                )

    def close(self) -> None:
        with self._listener_lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self._async.is_open:  # close_async was not awaited: close its sockets at least
            self._async.abandon()
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def ping(self) -> None:
        with self._tx(None) as cur:
            cur.execute("SELECT 1")

    def schema_status(self) -> tuple[str | None, str]:
        with translate_errors():
            return runner.current(self.connect_raw, self.dialect), runner.head()

    @property
    def pool(self) -> ConnectionPool:
        if self._pool is None:
            raise ConfigurationError("the store is closed")
        return self._pool

    @contextmanager
    def _tx(self, org: str | None) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        """One transaction on a pooled connection, with the tenant setting for RLS (sent when
        the connection's session has another: session.py)."""
        with translate_errors(), self.pool.connection() as conn:
            send = self._sessions.changes(conn, {ORG_SETTING: org or ""})
            try:
                with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                    if send:
                        cur.execute(set_config_sql(len(send), 0), pairs(send))
                    yield cur
            except BaseException:
                self._sessions.forget(conn)
                raise
            self._sessions.committed(conn, send)

    def _round_trip(
        self,
        org: str | None,
        query: sql.SQL | sql.Composed,
        params: Sequence[Any],
        local: Mapping[str, str] | None = None,
        *,
        prepare: bool | None = None,
        row_factory: RowFactory[Any] = dict_row,
    ) -> list[Any]:
        """One statement and the settings it needs (``local``; the tenant always) in ONE round
        trip, in one implicit transaction on an autocommit connection.

        The tenant and the tracked search settings (session.py) are session settings, sent only
        when the connection's session has other values; any other setting is transaction-local
        (``set_config(…, true)``), holding for exactly this statement. When something is to be
        set, the two statements are pipelined before one Sync, so they commit or fail together,
        without BEGIN and COMMIT round trips; when nothing is, the statement goes alone.
        ``prepare``: psycopg's choice (prepared once run ``prepare_threshold`` times) if ``None``;
        ``False`` sends an unnamed statement, which PostgreSQL always plans for its values.
        Rows are dicts unless ``row_factory`` says otherwise (tuples cost 5 µs less a row).
        """
        wanted, txlocal = split_settings(org, local)
        with translate_errors(), self.pool.connection() as conn:
            send = self._sessions.changes(conn, wanted)
            cur = conn.cursor(row_factory=row_factory)
            try:
                if send or txlocal:
                    with conn.pipeline():
                        conn.execute(set_config_sql(len(send), len(txlocal)), pairs(send, txlocal))
                        cur.execute(query, params, prepare=prepare)
                else:
                    cur.execute(query, params, prepare=prepare)
                # pgresult, not description: description builds a Column per field each call.
                res = cur.pgresult
                rows = cur.fetchall() if res is not None and res.nfields else []
            except BaseException:
                self._sessions.forget(conn)
                raise
            self._sessions.committed(conn, send)
            return rows

    # -- organizations and embedding spaces ----------------------------------------------------

    def ensure_organization(self, org: str) -> None:
        with self._tx(org) as cur:
            cur.execute(
                "INSERT INTO organizations (id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (org, org),
            )

    def ensure_embedding_space(self, dimensions: int, metric: str) -> None:
        key = (dimensions, metric)
        if key in self._spaces:
            return
        found = self._lookup_index(dimensions, metric)
        if found is not None:
            # An existing index keeps its type and parameters; settings apply to new builds.
            self._spaces[key] = found
            return
        vtype = self.settings.vector_type
        if dimensions > MAX_INDEXED_DIMENSIONS[vtype]:
            # Still stored and searchable exactly; HNSW stops at 2,000 (vector) / 4,000 (halfvec).
            log.warning(
                "no HNSW index for %d dimensions (pgvector's limit for %s is %d)",
                dimensions, vtype, MAX_INDEXED_DIMENSIONS[vtype],
            )  # fmt: skip
            self._spaces[key] = None
            return
        name = index_name(dimensions, metric, vtype)
        with self._tx(None) as cur:
            # One process builds, the others wait for it and then find it registered.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('engramdb_embedding_indexes'))")
            cur.execute(
                "SELECT to_regclass(index_name) IS NOT NULL AS present FROM embedding_indexes "
                "WHERE dimensions = %s AND metric = %s",
                key,
            )
            row = cur.fetchone()
            if row is None or not row["present"]:
                # Registered but gone: an operator dropped it to have it rebuilt with the
                # current settings (hnsw_m, hnsw_ef_construction, vector_type).
                cur.execute(self._index_ddl(name, dimensions, metric, vtype))
                cur.execute(
                    "INSERT INTO embedding_indexes (dimensions, metric, index_name) "
                    "VALUES (%s, %s, %s) ON CONFLICT (dimensions, metric) "
                    "DO UPDATE SET index_name = excluded.index_name",
                    (dimensions, metric, name),
                )
        self._spaces[key] = self._lookup_index(dimensions, metric)

    def _index_ddl(self, name: str, dimensions: int, metric: str, vector_type: str) -> sql.Composed:
        s = self.settings
        return index_ddl(
            name,
            dimensions,
            metric,
            vector_type,
            m=s.hnsw_m,
            ef_construction=s.hnsw_ef_construction,
        )

    def _lookup_index(self, dimensions: int, metric: str) -> str | None:
        """The stored type of the space's HNSW index, read from the index itself; None if none."""
        with self._tx(None) as cur:
            cur.execute(
                "SELECT t.typname FROM embedding_indexes e "
                "JOIN pg_index i ON i.indexrelid = to_regclass(e.index_name) "
                "JOIN pg_opclass o ON o.oid = i.indclass[0] "
                "JOIN pg_type t ON t.oid = o.opcintype "
                "WHERE e.dimensions = %s AND e.metric = %s",
                (dimensions, metric),
            )
            row = cur.fetchone()
        return None if row is None else str(row["typname"])

    def index_known(self, dimensions: int, metric: str) -> bool:
        """Whether :meth:`_index_type` answers without a round trip."""
        return (dimensions, metric) in self._spaces

    def _index_type(self, dimensions: int, metric: str) -> str | None:
        """Like :meth:`_lookup_index`, remembered once an index is known (searches ask often)."""
        key = (dimensions, metric)
        if key in self._spaces:
            return self._spaces[key]
        found = self._lookup_index(dimensions, metric)
        if found is not None:
            self._spaces[key] = found
        return found

    # -- memories: reads and changes ------------------------------------------------------------

    def get_memory(
        self,
        org: str,
        memory_id: uuid.UUID,
        *,
        include_deleted: bool = False,
        with_embedding: bool = False,
    ) -> Memory:
        with self._tx(org) as cur:
            cur.execute(
                sql.SQL(
                    "SELECT {} FROM memories m WHERE m.organization_id = %s AND m.id = %s"
                ).format(cols("m", with_embedding)),
                (org, memory_id),
            )
            row = cur.fetchone()
        if row is None or (row["deleted_at"] is not None and not include_deleted):
            raise NotFound(f"memory {memory_id} not found", details={"id": str(memory_id)})
        return to_memory(row)

    def list_memories(
        self, org: str, query: MemoryQuery, *, limit: int, after: uuid.UUID | None
    ) -> list[Memory]:
        params: list[Any] = []
        where = compile_query(org, query, params, utcnow())
        if after is not None:
            where += " AND m.id < %s"
            params.append(after)
        params.append(limit)
        with self._tx(org) as cur:
            cur.execute(
                sql.SQL("SELECT {} FROM memories m WHERE {} ORDER BY m.id DESC LIMIT %s").format(
                    cols("m"), sql.SQL(where)
                ),
                params,
            )
            return [to_memory(r) for r in cur.fetchall()]

    def update_memory(
        self,
        org: str,
        memory_id: uuid.UUID,
        changes: Mapping[str, Any],
        *,
        actor: str | None,
        event: str = "update",
        audit: AuditChanged | None = None,
    ) -> Memory:
        sets: list[sql.Composable] = []
        params: list[Any] = [org, memory_id, uuid.uuid4(), event, actor]
        for name, value in changes.items():
            if name == "embedding":
                sets.append(sql.SQL("embedding = %s, embedding_dim = %s"))
                params.extend([value, None if value is None else len(value)])
                continue
            sets.append(sql.SQL("{} = %s").format(sql.Identifier(name)))
            params.append(Jsonb(value) if name in ("data", "metadata") else value)
        params.append(actor)
        with self._tx(org) as cur:
            cur.execute(
                sql.SQL(
                    "WITH old AS (SELECT * FROM memories WHERE organization_id = %s AND id = %s "
                    "  AND deleted_at IS NULL FOR UPDATE), "
                    "hist AS (INSERT INTO memory_history "
                    "  (organization_id, id, memory_id, version, event, snapshot, changed_by_id) "
                    "  SELECT organization_id, %s, id, version, %s, "
                    "  to_jsonb(old) - 'embedding' - 'tsv' - 'embedding_dim', %s FROM old) "
                    "UPDATE memories m SET {sets}{sep}version = m.version + 1, updated_at = now(), "
                    "last_updated_by_id = %s FROM old "
                    "WHERE m.organization_id = old.organization_id AND m.id = old.id "
                    "RETURNING {cols}"
                ).format(
                    sets=sql.SQL(", ").join(sets),
                    sep=sql.SQL(", ") if sets else sql.SQL(""),
                    cols=cols("m"),
                ),
                params,
            )
            row = cur.fetchone()
            if row is None:
                raise NotFound(f"memory {memory_id} not found", details={"id": str(memory_id)})
            memory = to_memory(row)
            if audit is not None:
                cur.execute(AUDIT_INSERT, audit_values(audit(memory)))
        return memory

    def delete_memory(
        self,
        org: str,
        memory_id: uuid.UUID,
        *,
        purge: bool,
        actor: str | None,
        audit: AuditEntry | None = None,
    ) -> None:
        if not purge:
            self.update_memory(
                org, memory_id, {"deleted_at": utcnow()}, actor=actor, event="delete",
                audit=None if audit is None else (lambda _m: audit),
            )  # fmt: skip
            return
        with self._tx(org) as cur:
            cur.execute(
                "DELETE FROM memories WHERE organization_id = %s AND id = %s RETURNING id",
                (org, memory_id),
            )
            if cur.fetchone() is None:
                raise NotFound(f"memory {memory_id} not found", details={"id": str(memory_id)})
            if audit is not None:
                cur.execute(AUDIT_INSERT, audit_values(audit))

    def memory_history(self, org: str, memory_id: uuid.UUID) -> list[MemoryVersion]:
        with self._tx(org) as cur:
            cur.execute(
                sql.SQL(
                    "SELECT {} FROM memories m WHERE m.organization_id = %s AND m.id = %s"
                ).format(cols("m")),
                (org, memory_id),
            )
            current = cur.fetchone()
            if current is None:
                raise NotFound(f"memory {memory_id} not found", details={"id": str(memory_id)})
            cur.execute(
                "SELECT version, event, snapshot, changed_at, changed_by_id FROM memory_history "
                "WHERE organization_id = %s AND memory_id = %s ORDER BY version",
                (org, memory_id),
            )
            rows = cur.fetchall()
        out = [
            MemoryVersion(
                memory_id=memory_id,
                version=r["version"],
                event=r["event"],
                memory=Memory.model_validate({k: r["snapshot"].get(k) for k in MEMORY_FIELDS}),
                changed_at=r["changed_at"],
                changed_by_id=r["changed_by_id"],
            )
            for r in rows
        ]
        mem = to_memory(current)
        out.append(
            MemoryVersion(
                memory_id=memory_id,
                version=mem.version,
                event="current",
                memory=mem,
                changed_at=mem.updated_at,
                changed_by_id=mem.last_updated_by_id,
            )
        )
        return out
