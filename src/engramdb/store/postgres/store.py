"""PostgreSQL + pgvector store: pooled connections, every statement's tenant setting, memories.

Round trips are the unit of cost here. Pooled connections are in autocommit mode, so a pipeline
of statements up to one Sync runs as one implicit transaction: a single ``add()`` or a search is
one round trip (its settings, when the connection's session holds others: session.py, then the
statement), and batches go through binary COPY.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import RowFactory, dict_row, tuple_row
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
    AuditCreated,
    Capabilities,
    ImportStats,
    MemoryQuery,
    NewMemory,
    RawHit,
    SearchSpec,
)
from ..security import AUDIT_FIELDS
from .aio import AsyncSearches
from .compile import ACCESS_EXPRESSIONS, access_expression, compile_query, compile_scope
from .errors import translate_errors
from .notify import KeyChangeListener
from .plans import GENERIC_PLAN_SINCE, estimate_statement, generic_plan_fits, plan_rows
from .resources import PostgresResources
from .security import AUDIT_INSERT, SecurityMixin, audit_values
from .session import ORG_SETTING, TRACKED, Sessions, pairs, set_config_sql, split_settings
from .vectors import register_numpy_dumper

__all__ = ["PostgresStore"]

log = logging.getLogger(__name__)

MIN_SERVER_VERSION = 150000
MIN_PGVECTOR = (0, 7)

_OPERATORS = {"cosine": "<=>", "l2": "<->", "ip": "<#>"}
_OPCLASS_SUFFIX = {"cosine": "_cosine_ops", "l2": "_l2_ops", "ip": "_ip_ops"}
#: pgvector's HNSW dimension limit per stored type; past it a space is searched exactly.
_MAX_INDEXED_DIMENSIONS = {"vector": 2000, "halfvec": 4000}

MEMORY_FIELDS = [
    "id", "organization_id", "kind", "content", "agent_id", "user_id", "room_id", "data",
    "importance", "tags", "metadata", "scope", "level", "content_hash", "is_unique",
    "related_ids", "access_count", "last_accessed_at", "valid_from", "valid_to", "expires_at",
    "version", "embedding_model", "created_at", "updated_at", "created_by_id",
    "last_updated_by_id", "deleted_at",
]  # fmt: skip
#: Written columns and their types: binary COPY needs the types, and staging mirrors them.
_INSERT_TYPES = {
    "organization_id": "text", "id": "uuid", "kind": "text", "content": "text",
    "agent_id": "text", "user_id": "text", "room_id": "text", "data": "jsonb",
    "importance": "real", "tags": "text[]", "metadata": "jsonb", "scope": "text",
    "level": "text", "content_hash": "text", "is_unique": "boolean", "related_ids": "uuid[]",
    "valid_from": "timestamptz", "valid_to": "timestamptz", "expires_at": "timestamptz",
    "embedding_model": "text", "embedding_dim": "smallint", "embedding": "vector",
    "created_at": "timestamptz", "updated_at": "timestamptz", "created_by_id": "text",
    "last_updated_by_id": "text",
}  # fmt: skip
_INSERT_FIELDS = list(_INSERT_TYPES)
#: audit_log's column types, for the entry written with a single insert (_insert_one_sql).
_AUDIT_TYPES = {
    "organization_id": "text", "id": "uuid", "actor_type": "text", "actor_id": "text",
    "action": "text", "resource_type": "text", "resource_id": "text", "before": "jsonb",
    "after": "jsonb", "request_id": "text", "created_at": "timestamptz",
}  # fmt: skip
_COPY_TYPES = [*_INSERT_TYPES.values(), "integer"]  # + ord, the row's place in its batch
_STAGE = "engramdb_stage"
#: Staged rows inserted per statement (see PostgresStore._insert_staged_rows).
_INSERT_CHUNK = 1000
_UNIQUE_TARGET = sql.SQL(
    "(organization_id, kind, agent_id, user_id, room_id, content_hash) "
    "WHERE is_unique AND deleted_at IS NULL"
)
#: (table, column) of the scopes registered on first use, so foreign keys always hold.
_SCOPES = (("agents", "agent_id"), ("users", "user_id"), ("rooms", "room_id"))


def _render(composed: sql.Composable) -> sql.SQL:
    """A constant fragment rendered once: composing it again for every query costs more than
    the query's own round trip on the hot paths."""
    return sql.SQL(composed.as_string())


def _compose_cols(alias: str, with_embedding: bool) -> sql.SQL:
    """The memory's fields as read back: its columns, the access fields with what
    ``memory_access`` counted (evaluated for the rows returned only, after any sort and limit,
    as PostgreSQL postpones costly output expressions past them)."""
    names = [*MEMORY_FIELDS, "embedding"] if with_embedding else MEMORY_FIELDS
    return _render(
        sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(sql.SQL(access_expression(alias, n)), sql.Identifier(n))
            if n in ACCESS_EXPRESSIONS
            else sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(n))
            for n in names
        )
    )


_COLS = {(a, e): _compose_cols(a, e) for a in ("m",) for e in (False, True)}


def _cols(alias: str, with_embedding: bool = False) -> sql.SQL:
    return _COLS.get((alias, with_embedding)) or _compose_cols(alias, with_embedding)


#: Memory.model_validate without its Python wrapper (2 µs a row on a search's hot path).
_memory_of = Memory.__pydantic_validator__.validate_python


def _raw_hit(row: Sequence[Any]) -> RawHit:
    """A search row (MEMORY_FIELDS, then _dist, _rank, _exact) as a hit."""
    return RawHit(
        memory=_memory_of(dict(zip(MEMORY_FIELDS, row, strict=False))),
        distance=None if row[-3] is None else float(row[-3]),
        text_rank=None if row[-2] is None else float(row[-2]),
    )


def _to_memory(row: Mapping[str, Any]) -> Memory:
    values = {k: row[k] for k in MEMORY_FIELDS}
    emb = row.get("embedding")
    if emb is not None:
        # pgvector's loader gives numpy arrays or Vector objects depending on the column type.
        arr = emb.to_numpy() if hasattr(emb, "to_numpy") else np.asarray(emb)
        values["embedding"] = [float(x) for x in arr]
    return Memory.model_validate(values)


def default_pool_size() -> int:
    """Connections worth having on this machine: PostgreSQL's usual 2 x cores (+2 for waits on
    I/O and commits), and at least 4 so a few concurrent writers share commits (group commit)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(4, 2 * cores + 2)


def _index_name(dimensions: int, metric: str, vector_type: str) -> str:
    suffix = "" if vector_type == "vector" else f"_{vector_type}"
    return f"memories_embedding_{dimensions}_{metric}{suffix}_idx"


@functools.cache
def _register_scopes_sql() -> sql.Composed:
    """Registers the agents, users and rooms named by a batch (a pair of parameters each: the
    organization and an array of ids), so that the batch's foreign keys hold."""
    ctes = [
        sql.SQL(
            "s{} AS (INSERT INTO {} (organization_id, id) SELECT %s, unnest(%s::text[]) "
            "ON CONFLICT DO NOTHING)"
        ).format(sql.SQL(str(i)), sql.Identifier(table))
        for i, (table, _) in enumerate(_SCOPES)
    ]
    return sql.SQL("WITH {} SELECT 1").format(sql.SQL(", ").join(ctes))


@functools.cache
def _insert_one_sql(named: tuple[bool, bool, bool], unique: bool, audited: bool) -> sql.SQL:
    """The single-row insert of :meth:`PostgresStore._insert_one`, rendered once per shape
    (which of agent, user and room the row names; whether it is deduplicated; whether an audit
    entry goes with it): composing it for every add cost more client CPU than the rest of the
    add."""
    ctes: list[sql.Composable] = []
    for i, ((table, _), present) in enumerate(zip(_SCOPES, named, strict=True)):
        if present:
            ctes.append(
                sql.SQL(
                    "s{} AS (INSERT INTO {} (organization_id, id) VALUES (%s, %s) "
                    "ON CONFLICT DO NOTHING)"
                ).format(sql.SQL(str(i)), sql.Identifier(table))
            )
    ctes.append(
        sql.SQL(
            "ins AS (INSERT INTO memories ({fields}) VALUES ({ph}) "
            "ON CONFLICT {target} DO NOTHING RETURNING {cols})"
        ).format(
            fields=sql.SQL(", ").join(map(sql.Identifier, _INSERT_FIELDS)),
            ph=sql.SQL(", ").join(sql.Placeholder() * len(_INSERT_FIELDS)),
            target=_UNIQUE_TARGET,
            cols=sql.SQL(", ").join(map(sql.Identifier, MEMORY_FIELDS)),
        )
    )
    if audited:
        # One entry per row the insert returns: none when the row was a duplicate. Cast, as
        # the parameters of a SELECT list have no type of their own.
        ctes.append(
            sql.SQL("aud AS (INSERT INTO audit_log ({}) SELECT {} FROM ins)").format(
                sql.SQL(", ").join(map(sql.Identifier, AUDIT_FIELDS)),
                sql.SQL(", ").join(sql.SQL("%s::" + _AUDIT_TYPES[f]) for f in AUDIT_FIELDS),
            )
        )
    query: sql.Composable = sql.SQL("WITH {} SELECT true AS _created, {} FROM ins").format(
        sql.SQL(", ").join(ctes), sql.SQL(", ").join(map(sql.Identifier, MEMORY_FIELDS))
    )
    if unique:
        # The existing live copy, read in the same statement when nothing was inserted. Each
        # condition is an equality or IS NULL, so the unique index finds it.
        conds: list[sql.Composable] = [sql.SQL("m.organization_id = %s"), sql.SQL("m.kind = %s")]
        for (_, attr), present in zip(_SCOPES, named, strict=True):
            test = "m.{} = %s" if present else "m.{} IS NULL"
            conds.append(sql.SQL(test).format(sql.Identifier(attr)))
        conds.append(sql.SQL("m.content_hash = %s"))
        query = sql.SQL(
            "{} UNION ALL SELECT false, {} FROM memories m WHERE NOT EXISTS "
            "(SELECT FROM ins) AND m.is_unique AND m.deleted_at IS NULL AND {}"
        ).format(query, _cols("m"), sql.SQL(" AND ").join(conds))
    return _render(query)


def scaled_ef_search(
    base: int, rows: float, reference_rows: int | None, growth: float = 0.5
) -> int:
    """The HNSW candidate list for a graph of ``rows`` vectors, ``base`` being right for
    ``reference_rows``: ``base * (rows / reference_rows) ** growth`` (the same recall takes more
    candidates in a bigger graph), never below ``base`` nor above pgvector's 1000."""
    if reference_rows is None or reference_rows <= 0 or rows <= reference_rows:
        return base
    return max(base, min(1000, round(base * math.pow(rows / reference_rows, growth))))


#: The whole rows of a sorted list's top ids (``c``), by primary key.
_JOIN_BACK = "JOIN memories m ON m.organization_id = %s AND m.id = c.id"

# Live rows are kept current by every commit; reltuples by VACUUM / ANALYZE / CREATE INDEX.
_TABLE_ROWS = sql.SQL(
    "SELECT greatest(c.reltuples, coalesce(s.n_live_tup, 0), 0)::float8 AS n FROM pg_class c "
    "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = 'memories'::regclass"
)


@dataclass(frozen=True, slots=True)
class SearchStatement:
    """A search's one statement (PostgresStore.search_statement) and how to send it."""

    query: sql.SQL
    params: list[Any]
    #: Settings for this statement (session.split_settings sorts them).
    local: dict[str, str]
    prepare: bool
    #: Set when the statement also counts its filter's rows: the key its choice is kept under.
    probe_key: tuple[Any, ...] | None
    #: Both a vector and a text list: a memory in both comes twice, to be merged.
    merge: bool = False


class _TtlCache:
    """A small thread-safe LRU whose entries expire: remembered search plans."""

    def __init__(self, seconds: float, size: int = 4096) -> None:
        self._seconds = seconds
        self._size = size
        self._data: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            if hit[0] < time.monotonic():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return hit[1]

    def put(self, key: Hashable, value: Any) -> None:
        if self._seconds <= 0:
            return
        with self._lock:
            self._data[key] = (time.monotonic() + self._seconds, value)
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class PostgresStore(SecurityMixin, PostgresResources):
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
        self._plans = _TtlCache(settings.search_plan_cache_seconds)
        #: a filter's condition (its text) -> PostgreSQL's generic estimate of its rows (plans.py).
        self._generic_rows = _TtlCache(max(settings.search_plan_cache_seconds, 1))
        # The table's size, for the HNSW candidate list; sizes drift slowly.
        self._table_rows = _TtlCache(max(settings.search_plan_cache_seconds, 1), size=1)
        #: What each pooled connection's session has set (tenant, search knobs): session.py.
        self._sessions = Sessions()
        #: The asynchronous search path (aio.py), opened by open_async on the server's loop.
        self._async = AsyncSearches(self, self._sessions, self._pool_max_size())
        #: API key change notices, started by the first watch_api_keys (the server's).
        self._listener: KeyChangeListener | None = None
        self._listener_lock = threading.Lock()
        if settings.vector_type not in _MAX_INDEXED_DIMENSIONS:
            raise ConfigurationError(
                f"vector_type must be one of {sorted(_MAX_INDEXED_DIMENSIONS)}; "
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
        self._pool = ConnectionPool(
            self.url,
            min_size=s.pool_min_size,
            max_size=self._pool_max_size(),
            # Autocommit: explicit transactions come from _tx; a pipeline without one is a
            # single implicit transaction ending at its Sync (_round_trip).
            kwargs={"prepare_threshold": 2, "autocommit": True},
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
        if dimensions > _MAX_INDEXED_DIMENSIONS[vtype]:
            # Still stored and searchable exactly; HNSW stops at 2,000 (vector) / 4,000 (halfvec).
            log.warning(
                "no HNSW index for %d dimensions (pgvector's limit for %s is %d)",
                dimensions, vtype, _MAX_INDEXED_DIMENSIONS[vtype],
            )  # fmt: skip
            self._spaces[key] = None
            return
        name = _index_name(dimensions, metric, vtype)
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
        # A partial expression index per space: one table holds vectors of any dimension.
        return sql.SQL(
            "CREATE INDEX IF NOT EXISTS {name} ON memories USING hnsw "
            "((embedding::{vtype}({dim})) {ops}) WITH (m = {m}, ef_construction = {ef}) "
            "WHERE embedding_dim = {dim}"
        ).format(
            name=sql.Identifier(name),
            vtype=sql.SQL(vector_type),
            dim=sql.Literal(dimensions),
            ops=sql.SQL(vector_type + _OPCLASS_SUFFIX[metric]),
            m=sql.Literal(self.settings.hnsw_m),
            ef=sql.Literal(self.settings.hnsw_ef_construction),
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

    # -- memories: writes -----------------------------------------------------------------------

    @staticmethod
    def _values(org: str, row: NewMemory, actor: str | None, now: datetime) -> list[Any]:
        emb = row.embedding
        return [
            org, row.id, row.kind, row.content, row.agent_id, row.user_id, row.room_id,
            Jsonb(row.data), row.importance, row.tags, Jsonb(row.metadata), row.scope, row.level,
            row.content_hash, row.is_unique, row.related_ids, row.valid_from, row.valid_to,
            row.expires_at, row.embedding_model, None if emb is None else len(emb), emb,
            row.created_at or now, now, actor, actor,
        ]  # fmt: skip

    def insert_memories(
        self,
        org: str,
        rows: Sequence[NewMemory],
        *,
        actor: str | None,
        audit: AuditCreated | None = None,
    ) -> list[tuple[Memory, bool]]:
        if not rows:
            return []
        if audit is not None and len(rows) != 1:
            raise ValueError("an audit entry goes with one row")
        now = utcnow()
        if len(rows) == 1:
            entry = None if audit is None else audit(rows[0].id)
            found = self._insert_one(org, rows[0], actor, now, entry)
            inserted = {m.id: m for m, created in found if created}
            existing = {_dedup_key(m): m for m, created in found if not created}
        else:
            with self._tx(org) as cur:
                self._stage(cur, org, rows, actor, now)
                staged = self._insert_staged_rows(cur, len(rows), _cols("m"))
                inserted = {r["id"]: _to_memory(r) for r in staged}
                missing = [r for r in rows if r.id not in inserted]
                existing = self._find_duplicates(cur, org, missing) if missing else {}
        out: list[tuple[Memory, bool]] = []
        for r in rows:
            if r.id in inserted:
                out.append((inserted[r.id], True))
                continue
            key = _dedup_key(r)
            if key not in existing:
                # The duplicate was committed by another transaction after this statement's
                # snapshot was taken: it is visible to a new one.
                with self._tx(org) as cur:
                    existing.update(self._find_duplicates(cur, org, [r]))
            out.append((existing[key], False))
        return out

    def _insert_one(
        self,
        org: str,
        row: NewMemory,
        actor: str | None,
        now: datetime,
        entry: AuditEntry | None = None,
    ) -> list[tuple[Memory, bool]]:
        """One row in one statement and one round trip: the scopes it names are registered, the
        row is inserted (with ``entry`` in the audit log), and when it is a duplicate the
        existing memory comes back instead (and no entry is written)."""
        scopes = [getattr(row, attr) for _, attr in _SCOPES]
        named = (scopes[0] is not None, scopes[1] is not None, scopes[2] is not None)
        params: list[Any] = []
        for value in scopes:
            if value is not None:
                params.extend([org, value])
        params.extend(self._values(org, row, actor, now))
        if entry is not None:
            params.extend(audit_values(entry))
        if row.is_unique:
            params.extend([org, row.kind, *(v for v in scopes if v is not None), row.content_hash])
        rows = self._round_trip(
            org, _insert_one_sql(named, row.is_unique, entry is not None), params
        )
        return [(_to_memory(r), bool(r["_created"])) for r in rows]

    def _stage(
        self,
        cur: psycopg.Cursor[dict[str, Any]],
        org: str,
        rows: Sequence[NewMemory],
        actor: str | None,
        now: datetime,
    ) -> None:
        """Binary COPY of ``rows`` into this session's staging table (emptied at commit)."""
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} ({}, ord integer) ON COMMIT DELETE ROWS"
            ).format(
                sql.Identifier(_STAGE),
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(k), sql.SQL(v))
                    for k, v in _INSERT_TYPES.items()
                ),
            )
        )
        self._copy(cur, _STAGE, org, rows, actor, now)

    @staticmethod
    def _copy(
        cur: psycopg.Cursor[dict[str, Any]],
        table: str,
        org: str,
        rows: Sequence[NewMemory],
        actor: str | None,
        now: datetime,
    ) -> None:
        """Binary COPY of ``rows`` into ``table``: the staging table, with each row's place in
        its batch (``ord``), or memories itself."""
        staged = table == _STAGE
        fields = sql.SQL(", ").join(map(sql.Identifier, _INSERT_FIELDS + ["ord"] * staged))
        with cur.copy(
            sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table), fields)
        ) as copy:
            copy.set_types(_COPY_TYPES if staged else _COPY_TYPES[:-1])
            for i, r in enumerate(rows):
                emb = r.embedding
                values = [
                    org, r.id, r.kind, r.content, r.agent_id, r.user_id, r.room_id, r.data,
                    r.importance, r.tags, r.metadata, r.scope, r.level, r.content_hash,
                    r.is_unique, r.related_ids, r.valid_from, r.valid_to, r.expires_at,
                    r.embedding_model, None if emb is None else len(emb), emb,
                    r.created_at or now, now, actor, actor,
                ]  # fmt: skip
                if staged:
                    values.append(i)
                copy.write_row(values)

    def _copy_direct(
        self,
        cur: psycopg.Cursor[dict[str, Any]],
        org: str,
        rows: Sequence[NewMemory],
        actor: str | None,
        now: datetime,
    ) -> bool:
        """COPY ``rows`` straight into memories, their scopes registered first, in a savepoint.
        False, with nothing written, when one of them duplicates a live memory (or another row):
        COPY has no ON CONFLICT, so the caller stages the batch to skip it, as add_many would.

        14 to 37% less time than staging 10,000 rows and inserting them from there (three runs);
        possible only where row-level security does not apply (PostgreSQL refuses COPY FROM
        under it).
        """
        scopes = [
            sorted({v for r in rows if (v := getattr(r, col)) is not None}) for _, col in _SCOPES
        ]
        try:
            with cur.connection.transaction():
                cur.execute(_register_scopes_sql(), [x for ids in scopes for x in (org, ids)])
                self._copy(cur, "memories", org, rows, actor, now)
        except psycopg.errors.UniqueViolation:
            return False
        return True

    def _insert_staged_rows(
        self, cur: psycopg.Cursor[dict[str, Any]], count: int, returning: sql.Composable
    ) -> list[dict[str, Any]]:
        """Insert the ``count`` staged rows in batch order, at most :data:`_INSERT_CHUNK` a
        statement (the first registering every staged scope); returns the ``returning`` rows.

        One statement for a batch of 10,000 rows, each inserted into the HNSW graph, can take
        longer than the interactive statement timeout on a slow machine; chunks keep every
        statement short, and skip duplicates of earlier chunks as one statement skips them.
        """
        out: list[dict[str, Any]] = []
        for start in range(0, count, _INSERT_CHUNK):
            cur.execute(
                self._insert_staged(returning, scopes=start == 0),
                (start, start + _INSERT_CHUNK),
            )
            out.extend(cur.fetchall())
        return out

    @staticmethod
    def _insert_staged(returning: sql.Composable, *, scopes: bool) -> sql.Composed:
        """One statement: register the staged rows' scopes (if ``scopes``), insert the rows
        with ``ord`` in [%s, %s) in batch order."""
        fields = sql.SQL(", ").join(map(sql.Identifier, _INSERT_FIELDS))
        ctes = [
            sql.SQL(
                "s{i} AS (INSERT INTO {table} (organization_id, id) SELECT DISTINCT "
                "organization_id, {col} FROM {stage} WHERE {col} IS NOT NULL "
                "ON CONFLICT DO NOTHING)"
            ).format(
                i=sql.SQL(str(i)),
                table=sql.Identifier(table),
                col=sql.Identifier(col),
                stage=sql.Identifier(_STAGE),
            )
            for i, (table, col) in enumerate(_SCOPES)
        ]
        # ORDER BY ord keeps the first of in-batch duplicates, as sequential adds would.
        return sql.SQL(
            "{with_scopes}INSERT INTO memories AS m ({fields}) SELECT {fields} FROM {stage} "
            "WHERE ord >= %s AND ord < %s ORDER BY ord ON CONFLICT {target} DO NOTHING "
            "RETURNING {returning}"
        ).format(
            with_scopes=sql.SQL("WITH {} ").format(sql.SQL(", ").join(ctes))
            if scopes
            else sql.SQL(""),
            fields=fields,
            stage=sql.Identifier(_STAGE),
            target=_UNIQUE_TARGET,
            returning=returning,
        )

    def _find_duplicates(
        self, cur: psycopg.Cursor[dict[str, Any]], org: str, rows: Sequence[NewMemory]
    ) -> dict[tuple[Any, ...], Memory]:
        keys = {_dedup_key(r) for r in rows}
        cur.execute(
            sql.SQL(
                "SELECT {cols} FROM memories m WHERE m.organization_id = %s AND m.is_unique "
                "AND m.deleted_at IS NULL AND m.content_hash = ANY(%s)"
            ).format(cols=_cols("m")),
            (org, sorted({k[0] for k in keys})),
        )
        found: dict[tuple[Any, ...], Memory] = {}
        for row in cur.fetchall():
            mem = _to_memory(row)
            found[_dedup_key(mem)] = mem
        return found

    # -- memories: bulk import ------------------------------------------------------------------

    def import_memories(
        self,
        org: str,
        batches: Iterable[Sequence[NewMemory]],
        *,
        actor: str | None,
        dimensions: int,
        metric: str,
        rebuild_index: bool | None = None,
        on_progress: Callable[[ImportStats], None] | None = None,
    ) -> ImportStats:
        stats = ImportStats()
        now = utcnow()
        with self._tx(org) as cur:
            # A long import must not be cut by the interactive statement timeout.
            cur.execute("SET LOCAL statement_timeout = 0")
            # Whether row-level security applies to this session: if it does, COPY into the
            # table is refused, and a count of its rows sees this organization's only.
            cur.execute("SELECT row_security_active('memories') AS rls")
            direct = not cur.fetchone()["rls"]  # type: ignore[index]
            index = self._detach_index(cur, dimensions, metric, rebuild_index, sees_all=direct)
            for batch in batches:
                if not batch:
                    continue
                self._check_related(cur, org, batch)
                if direct and self._copy_direct(cur, org, batch, actor, now):
                    created = len(batch)
                    stats.copied += created
                else:
                    # Duplicates found (a file imported again, most likely): staged from now on.
                    direct = False
                    self._stage(cur, org, batch, actor, now)
                    created = len(self._insert_staged_rows(cur, len(batch), sql.SQL("m.id")))
                    cur.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(_STAGE)))
                stats.rows += len(batch)
                stats.created += created
                stats.duplicates += len(batch) - created
                if on_progress is not None:
                    on_progress(stats)
            if index is not None:
                stats.phase = "indexing"
                if on_progress is not None:
                    on_progress(stats)
                name, vtype = index
                cur.execute(self._index_ddl(name, dimensions, metric, vtype))
                cur.execute(
                    "UPDATE embedding_indexes SET index_name = %s "
                    "WHERE dimensions = %s AND metric = %s",
                    (name, dimensions, metric),
                )
                stats.index_rebuilt = True
        if index is not None:
            self._spaces[(dimensions, metric)] = index[1]
        if stats.created:
            self._plans.clear()  # row counts changed: plans are re-probed
            self._generic_rows.clear()  # and the statistics are read again, below
            # Fresh statistics now rather than when autovacuum gets to it: the planner
            # chooses between the B-tree and HNSW paths with them.
            self._round_trip(
                None,
                sql.SQL(
                    "ANALYZE memories (organization_id, agent_id, user_id, room_id, kind, "
                    "embedding_dim, deleted_at, expires_at, valid_from, valid_to)"
                ),
                [],
            )
        stats.phase = "done"
        if on_progress is not None:
            on_progress(stats)
        return stats

    @staticmethod
    def _check_related(
        cur: psycopg.Cursor[dict[str, Any]], org: str, rows: Sequence[NewMemory]
    ) -> None:
        """Every ``related_ids`` entry names a live memory (this transaction's included)."""
        related = sorted({rid for r in rows for rid in r.related_ids})
        if not related:
            return
        cur.execute(
            "SELECT array(SELECT x FROM unnest(%s::uuid[]) AS x WHERE NOT EXISTS (SELECT 1 "
            "FROM memories m WHERE m.organization_id = %s AND m.id = x AND m.deleted_at IS NULL)"
            ") AS missing",
            (related, org),
        )
        row = cur.fetchone()
        missing = set(row["missing"]) if row is not None else set()
        for r in rows:
            for rid in r.related_ids:
                if rid in missing:
                    raise NotFound(
                        f"related memory {rid} not found",
                        details={"memory": str(r.id), "related_id": str(rid)},
                    )

    def _detach_index(
        self,
        cur: psycopg.Cursor[dict[str, Any]],
        dimensions: int,
        metric: str,
        rebuild_index: bool | None,
        *,
        sees_all: bool = True,
    ) -> tuple[str, str] | None:
        """Drop the space's HNSW index for a load, in the import's transaction; returns the
        (name, type) to build at the end, or None to load through the index.

        Loading into an indexed table inserts every row into the graph one by one; building the
        graph once from all rows is several times faster. Automatic only into an empty space:
        the index is gone until commit, and the lock taken holds off every other reader.
        ``sees_all``: the session sees every organization's rows. One under row-level security
        (an owner that is not a superuser) cannot tell an empty space from one holding only
        other tenants' vectors, whose shared index it would drop and rebuild while every tenant
        waits: it loads through the index unless ``rebuild_index`` asks otherwise.
        """
        if rebuild_index is False or (rebuild_index is None and not sees_all):
            return None
        cur.execute(
            "SELECT e.index_name, pg_has_role(current_user, c.relowner, 'USAGE') AS owner "
            "FROM embedding_indexes e JOIN pg_class c ON c.oid = to_regclass(e.index_name) "
            "WHERE e.dimensions = %s AND e.metric = %s",
            (dimensions, metric),
        )
        row = cur.fetchone()
        if row is None or not row["owner"]:
            return None  # no index, or not ours to drop (the application role runs no DDL)
        if rebuild_index is None:
            cur.execute(
                "SELECT EXISTS (SELECT 1 FROM memories WHERE embedding_dim = %s)", (dimensions,)
            )
            if cur.fetchone()["exists"]:  # type: ignore[index]
                return None
            cur.execute("LOCK TABLE memories IN SHARE ROW EXCLUSIVE MODE")
            # Checked again under the lock: no other writer can add to the space now.
            cur.execute(
                "SELECT EXISTS (SELECT 1 FROM memories WHERE embedding_dim = %s)", (dimensions,)
            )
            if cur.fetchone()["exists"]:  # type: ignore[index]
                return None
        cur.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(row["index_name"])))
        vtype = self.settings.vector_type
        if dimensions > _MAX_INDEXED_DIMENSIONS[vtype]:
            vtype = "vector" if dimensions <= _MAX_INDEXED_DIMENSIONS["vector"] else "halfvec"
        return _index_name(dimensions, metric, vtype), vtype

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
                ).format(_cols("m", with_embedding)),
                (org, memory_id),
            )
            row = cur.fetchone()
        if row is None or (row["deleted_at"] is not None and not include_deleted):
            raise NotFound(f"memory {memory_id} not found", details={"id": str(memory_id)})
        return _to_memory(row)

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
                    _cols("m"), sql.SQL(where)
                ),
                params,
            )
            return [_to_memory(r) for r in cur.fetchall()]

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
                    cols=_cols("m"),
                ),
                params,
            )
            row = cur.fetchone()
            if row is None:
                raise NotFound(f"memory {memory_id} not found", details={"id": str(memory_id)})
            memory = _to_memory(row)
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
                ).format(_cols("m")),
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
        mem = _to_memory(current)
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

    # -- memories: search -----------------------------------------------------------------------

    def known_table_rows(self) -> float | None:
        """What :meth:`_memories_rows` remembers, without reading it when it does not."""
        rows = self._table_rows.get("memories")
        return None if rows is None else float(rows)

    def _memories_rows(self) -> float:
        """Rows in the memories table (all organizations share its HNSW graphs), from the
        statistics; read at most once per ``search_plan_cache_seconds``."""
        rows = self.known_table_rows()
        if rows is None:
            found = self._round_trip(None, _TABLE_ROWS, [])
            rows = float(found[0]["n"]) if found else 0.0
            self._table_rows.put("memories", rows)
        return float(rows)

    def known_generic_rows(self, where: str) -> float | None:
        """What :meth:`generic_rows` remembers of ``where``, without reading it when it does not."""
        rows = self._generic_rows.get(where)
        return None if rows is None else float(rows)

    def generic_rows(self, org: str, where: str) -> float:
        """PostgreSQL's estimate of the rows the condition ``where`` (a search's, on ``m``)
        keeps when planned without its values, as a generic plan is; ``inf`` where it cannot
        say (before PostgreSQL 16, which added EXPLAIN's GENERIC_PLAN). Read once per condition
        and ``search_plan_cache_seconds``: the estimate depends on its shape, not its values."""
        rows = self.known_generic_rows(where)
        if rows is not None:
            return rows
        explained = None
        with translate_errors(), self.pool.connection() as conn:
            if conn.info.server_version >= GENERIC_PLAN_SINCE:
                # The tenant is set as for the search: row-level security adds its condition.
                send = self._sessions.changes(conn, split_settings(org, None)[0])
                try:
                    if send:
                        conn.execute(set_config_sql(len(send), 0), pairs(send))
                        self._sessions.committed(conn, send)
                    cur = conn.cursor(row_factory=tuple_row)
                    row = cur.execute(estimate_statement(where)).fetchone()
                    explained = None if row is None else row[0]
                except psycopg.Error as exc:
                    # Not worth failing a search over: it is planned for its values instead.
                    self._sessions.forget(conn)
                    log.warning("no generic estimate for a search's filter: %s", exc)
        return self.remember_generic_rows(where, explained)

    def remember_generic_rows(self, where: str, explained: Any) -> float:
        """Keeps what the EXPLAIN answered of ``where`` (``None``: nothing) and returns it."""
        rows = math.inf if explained is None else plan_rows(explained)
        self._generic_rows.put(where, rows)
        return rows

    def search_memories(self, org: str, spec: SearchSpec) -> list[RawHit]:
        """Vector and/or text candidates, each list its own top ``limit``, in one round trip.

        The vector list is exact or approximate per query. A filter matching at most
        ``exact_search_max_rows`` rows, and less than ``exact_search_max_share`` of the table,
        is searched exactly: the B-tree indexes on the scope columns select the rows and each
        distance is computed, which is both complete and cheap for few rows. Other filters walk
        the HNSW graph with iterative scans (the scan goes on until enough rows pass the filter)
        and a larger candidate list: a subset that big, or that dense, surrounds any query with
        its own rows, where the graph walk finds them. The filter's rows are counted (up to the
        line) by the search statement itself the first time, then the choice is remembered for
        a while per filter.

        A graph walk returns whole rows as it finds them; the exact and text lists rank
        ``(id, score)`` pairs and read back whole rows for their top ``limit`` only (by primary
        key). The lists are glued with ``UNION ALL``; a memory in both comes twice and is merged
        here.
        """
        statement = self.search_statement(
            org, spec, self._memories_rows, lambda where: self.generic_rows(org, where)
        )
        if statement is None:
            return []
        rows = self._round_trip(
            org,
            statement.query,
            statement.params,
            statement.local,
            prepare=statement.prepare,
            row_factory=tuple_row,
        )
        return self.search_hits(statement, rows)

    def search_statement(
        self,
        org: str,
        spec: SearchSpec,
        table_rows: Callable[[], float],
        generic_rows: Callable[[str], float],
    ) -> SearchStatement | None:
        """The statement of :meth:`search_memories` (``None``: nothing to search), given where
        the table's size comes from (read for a graph walk and to judge a generic plan) and
        PostgreSQL's generic estimate of a condition's rows (:meth:`generic_rows`, read for an
        exact list or a first search); shared with aio.py. The vector space's index must be
        known when a vector is searched (``_index_type``)."""
        now = utcnow()
        # The statement is assembled as text around the rendered filter: psycopg's composition
        # of the whole statement cost a quarter of a search's client CPU.
        parts: list[str] = []
        params: list[Any] = []
        # Plans must follow the filter's values (one user has 10 rows, another 50,000): a
        # generic plan would pick one path for all of them, so statements are planned for
        # their values (custom plans) -- except a vector list alone, whose path the store
        # chose itself, see below.
        local = {"plan_cache_mode": "force_custom_plan"}
        cte = ""
        probe_key: tuple[Any, ...] | None = None
        #: Whether the vector list (or the probe) may keep one generic plan (plans.py).
        generic = False
        line = int(self.settings.exact_search_max_rows)
        cols = _cols("m").as_string()
        if spec.embedding is not None:
            vec = np.asarray(spec.embedding, dtype=np.float32)
            dim = int(vec.shape[0])
            vtype = self._index_type(dim, spec.metric)
            exact = True if vtype is None else spec.exact
            if exact is None:
                key = (org, dim, spec.metric, spec.embedding_model, repr(spec.query))
                exact = self._plans.get(key)
                probe_key = key if exact is None else None
            wparams: list[Any] = []
            where = (
                f"{compile_query(org, spec.query, wparams, now)} "
                f"AND m.embedding_dim = {dim} AND m.embedding_model = %s"
            )
            wparams.append(spec.embedding_model)
            op = _OPERATORS[spec.metric]
            kind = "halfvec" if vtype == "halfvec" else "vector"
            # Without the cast the expression does not match the HNSW index: an exact scan.
            exact_dist = f"(m.embedding {op} %b)"
            hnsw_dist = f"(m.embedding::{kind}({dim}) {op} %b::{kind}({dim}))"
            n_col = ", (SELECT exact FROM d) AS _exact" if probe_key else ", NULL::bool AS _exact"
            if not spec.text:
                # A graph walk keeps its generic plan whatever the filter (it is the only plan
                # without a sort); an exact list, or a first search, only where PostgreSQL's
                # estimate without the values reads the filter through its index (plans.py).
                generic = exact is False or generic_plan_fits(generic_rows(where), table_rows())

            def vector_list(exact_list: bool, gate: str) -> None:
                if exact_list:
                    # Sorted in two steps: the filter's rows are ranked as (id, distance) and only
                    # the top ``limit`` are read back whole. Sorting whole rows made PostgreSQL
                    # build every candidate's full tuple first: 0.4 ms of 2.7 over one user's
                    # 1,000 memories, 1.6 ms of 17 over 11,000 (measured at 100,000 memories).
                    parts.append(
                        f"(SELECT {cols}, c._dist, NULL::float8 AS _rank{n_col} FROM (SELECT "
                        f"m.id, {exact_dist} AS _dist FROM memories m WHERE {where}{gate} "
                        f"ORDER BY _dist LIMIT %s) c {_JOIN_BACK} ORDER BY c._dist)"
                    )
                    params.extend([vec, *wparams, spec.limit, org])
                    return
                # A graph walk yields rows in order and stops at ``limit``: only those are built.
                parts.append(
                    f"(SELECT {cols}, {hnsw_dist} AS _dist, NULL::float8 AS _rank{n_col} "
                    f"FROM memories m WHERE {where}{gate} ORDER BY _dist LIMIT %s)"
                )
                params.extend([vec, *wparams, spec.limit])

            if probe_key is not None:
                # First time for this filter: count its rows up to the line, and let the count
                # gate which list runs (a one-time filter: the other is never executed). A
                # filter of scopes only is counted on its B-tree alone (index-only); any other
                # condition is counted on the rows, since it may keep far fewer of them.
                pparams: list[Any] = []
                scope = compile_scope(org, spec.query, pparams)
                if scope is None:
                    scope, pparams = where, wparams
                share = float(self.settings.exact_search_max_share)
                # The table's size comes from the statistics (live rows, kept current by every
                # commit), so a filter keeping most of the table is known as such for free.
                # (The function, not the pg_stat_user_tables view: planning the view's joins took
                # 0.5 ms of the statement's 1.1.)
                cte = (
                    f"WITH n AS (SELECT count(*) AS c FROM (SELECT FROM memories m WHERE {scope} "
                    f"LIMIT %s) p), d AS (SELECT n.c <= {line} AND n.c < {share!r} * greatest("
                    "pg_stat_get_live_tuples('memories'::regclass), "
                    "(SELECT c.reltuples FROM pg_class c WHERE c.oid = 'memories'::regclass), 1) "
                    "AS exact FROM n) "
                )
                params.extend([*pparams, line + 1])
                vector_list(True, " AND (SELECT exact FROM d)")
                vector_list(False, " AND NOT (SELECT exact FROM d)")
            else:
                vector_list(exact, "")
            if not exact:
                ef = spec.ef_search
                if ef is None:
                    s = self.settings
                    base, growth = (
                        (s.hnsw_filtered_ef_search, s.hnsw_filtered_ef_search_growth)
                        if spec.query.filter is not None
                        else (s.hnsw_ef_search, s.hnsw_ef_search_growth)
                    )
                    ef = scaled_ef_search(
                        base, table_rows(), s.hnsw_ef_search_reference_rows, growth
                    )
                local["hnsw.ef_search"] = str(ef)
                # The choice of the graph is made here, not by the planner: without statistics
                # (a table loaded but not yet analyzed) it estimated a handful of rows and
                # sorted every row instead, 15 ms instead of 1.4 at 10,000 memories, growing
                # with the table. Sorting stays possible where nothing else can order a list
                # (the exact and text lists), as the planner then has no other plan.
                local["enable_sort"] = "off"
        if spec.text:
            tparams: list[Any] = [spec.text]
            twhere = compile_query(org, spec.query, tparams, now)
            # Ranked in two steps too, as every match is ranked before the top ones are known.
            parts.append(
                f"(SELECT {cols}, NULL::float8 AS _dist, c._rank, NULL::bool AS _exact FROM "
                "(SELECT m.id, ts_rank_cd(m.tsv, q.q) AS _rank FROM memories m, "
                f"websearch_to_tsquery('english', %s) AS q(q) WHERE {twhere} AND m.tsv @@ q.q "
                f"ORDER BY _rank DESC, m.id DESC LIMIT %s) c {_JOIN_BACK} "
                "ORDER BY c._rank DESC, c.id DESC)"
            )
            params.extend([*tparams, spec.limit, org])
        if not parts:
            return None
        if generic:
            # A vector list alone, once its kind is chosen, is planned once per connection and
            # filter shape where that plan suits every value: the graph walk always (its only
            # plan without a sort), an exact list and a first search where the filter's rows are
            # read through its index (above). Planning each time cost more than running a small
            # search (0.13 against 0.08 ms for one user's memory among 100,000) and took ~0.3 ms
            # of a 3 ms unfiltered one; a first search, its statement twice as long, went from
            # 2.9 to 0.9 ms at 10,000 memories. Text lists stay planned for their words: how many
            # rows a word matches decides between its GIN index and the scope's B-trees.
            local["plan_cache_mode"] = "force_generic_plan"
        return SearchStatement(
            query=sql.SQL(cte + " UNION ALL ".join(parts)),
            params=params,
            local=local,
            # A first search planned for its values runs once per filter value: not worth a
            # prepared statement on every connection.
            prepare=probe_key is None or generic,
            probe_key=probe_key,
            merge=bool(spec.text) and spec.embedding is not None,
        )

    def search_hits(
        self, statement: SearchStatement, rows: Sequence[tuple[Any, ...]]
    ) -> list[RawHit]:
        """What :meth:`search_statement`'s statement returned (rows as tuples, in the order of
        its columns: MEMORY_FIELDS, _dist, _rank, _exact), as hits; remembers the plan a probe
        chose."""
        probe_key = statement.probe_key
        if probe_key is not None and rows:
            decided = next((r[-1] for r in rows if r[-1] is not None), None)
            if decided is not None:
                self._plans.put(probe_key, bool(decided))
        if not statement.merge:  # one list: every row is another memory
            return [_raw_hit(r) for r in rows]
        hits: dict[uuid.UUID, RawHit] = {}
        for r in rows:
            seen = hits.get(r[0])
            if seen is None:
                hits[r[0]] = _raw_hit(r)
            else:  # found by both lists
                dist = None if r[-3] is None else float(r[-3])
                rank = None if r[-2] is None else float(r[-2])
                hits[r[0]] = RawHit(
                    memory=seen.memory,
                    distance=seen.distance if dist is None else dist,
                    text_rank=seen.text_rank if rank is None else rank,
                )
        return list(hits.values())

    def record_access(self, org: str, counts: Mapping[uuid.UUID, int], at: datetime) -> None:
        if not counts:
            return
        # Upserted in id order, so concurrent flushes (other processes) take the rows' locks in
        # the same order and cannot deadlock; ids of memories deleted meanwhile are skipped
        # (the join), as the foreign key would refuse them.
        ids = sorted(counts)
        self._round_trip(
            org,
            sql.SQL(
                "INSERT INTO memory_access AS a (organization_id, memory_id, access_count, "
                "last_accessed_at) "
                "SELECT m.organization_id, m.id, c.n, %s FROM "
                "unnest(%s::uuid[], %s::int[]) AS c(id, n) "
                "JOIN memories m ON m.organization_id = %s AND m.id = c.id ORDER BY c.id "
                "ON CONFLICT (organization_id, memory_id) DO UPDATE SET "
                "access_count = a.access_count + excluded.access_count, "
                "last_accessed_at = greatest(a.last_accessed_at, excluded.last_accessed_at)"
            ),
            (at, ids, [counts[i] for i in ids], org),
        )


def _dedup_key(r: NewMemory | Memory) -> tuple[Any, ...]:
    return (r.content_hash, r.kind, r.agent_id, r.user_id, r.room_id)
