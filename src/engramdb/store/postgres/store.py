"""PostgreSQL + pgvector store: pooled connections, tenant setting per transaction, memories."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from ...errors import ConfigurationError, MigrationRequired, NotFound
from ...migrations import runner
from ...models import Memory, MemoryVersion, utcnow
from ...settings import Settings
from ..base import Capabilities, MemoryQuery, NewMemory, RawHit, SearchSpec
from .compile import compile_query
from .errors import translate_errors
from .resources import PostgresResources
from .security import SecurityMixin

__all__ = ["PostgresStore"]

log = logging.getLogger(__name__)

MIN_SERVER_VERSION = 150000
MIN_PGVECTOR = (0, 7)
#: The per-transaction setting row-level security policies read the tenant from.
ORG_SETTING = "engramdb.organization_id"

_OPERATORS = {"cosine": "<=>", "l2": "<->", "ip": "<#>"}
_OPCLASSES = {"cosine": "vector_cosine_ops", "l2": "vector_l2_ops", "ip": "vector_ip_ops"}
_MAX_INDEXED_DIMENSIONS = 2000  # pgvector's HNSW limit for `vector`

MEMORY_FIELDS = [
    "id", "organization_id", "kind", "content", "agent_id", "user_id", "room_id", "data",
    "importance", "tags", "metadata", "scope", "level", "content_hash", "is_unique",
    "related_ids", "access_count", "last_accessed_at", "valid_from", "valid_to", "expires_at",
    "version", "embedding_model", "created_at", "updated_at", "created_by_id",
    "last_updated_by_id", "deleted_at",
]  # fmt: skip
_INSERT_FIELDS = [
    "organization_id", "id", "kind", "content", "agent_id", "user_id", "room_id", "data",
    "importance", "tags", "metadata", "scope", "level", "content_hash", "is_unique",
    "related_ids", "valid_from", "valid_to", "expires_at", "embedding_model", "embedding_dim",
    "embedding", "created_at", "updated_at", "created_by_id", "last_updated_by_id",
]  # fmt: skip
_UNIQUE_TARGET = sql.SQL(
    "(organization_id, kind, agent_id, user_id, room_id, content_hash) "
    "WHERE is_unique AND deleted_at IS NULL"
)


def _cols(alias: str, with_embedding: bool = False) -> sql.Composable:
    names = [*MEMORY_FIELDS, "embedding"] if with_embedding else MEMORY_FIELDS
    return sql.SQL(", ").join(
        sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(n)) for n in names
    )


def _to_memory(row: Mapping[str, Any]) -> Memory:
    values = {k: row[k] for k in MEMORY_FIELDS}
    emb = row.get("embedding")
    if emb is not None:
        # pgvector's loader gives numpy arrays or Vector objects depending on the column type.
        arr = emb.to_numpy() if hasattr(emb, "to_numpy") else np.asarray(emb)
        values["embedding"] = [float(x) for x in arr]
    return Memory.model_validate(values)


class PostgresStore(SecurityMixin, PostgresResources):
    """Store over a PostgreSQL ≥ 15 with pgvector ≥ 0.7."""

    dialect = "postgresql"
    capabilities = Capabilities(row_level_security=True)

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.settings = settings
        self._pool: ConnectionPool | None = None
        self._spaces: set[tuple[int, str]] = set()

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
            max_size=s.pool_max_size,
            kwargs={"prepare_threshold": 2},
            configure=self._configure,
            name="engramdb",
            open=False,
        )
        with translate_errors():
            self._pool.open(wait=True, timeout=30)
        return self

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        from pgvector.psycopg import register_vector

        register_vector(conn)
        s = self.settings
        # Session defaults: relaxed iterative scans keep filtered HNSW searches complete.
        conn.execute(
            "SELECT set_config('hnsw.ef_search', %s, false), "
            "set_config('hnsw.iterative_scan', 'relaxed_order', false), "
            "set_config('statement_timeout', %s, false)",
            (str(s.hnsw_ef_search), str(s.statement_timeout_ms)),
        )
        if s.app_role:
            # The server works as a role that is neither superuser nor owner, so row-level
            # security is really in force; migrations and DDL use connect_raw() (the owner).
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(s.app_role)))
        conn.commit()

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
        """One transaction on a pooled connection, with the tenant setting for RLS."""
        with (
            translate_errors(),
            self.pool.connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            if org is not None:
                cur.execute("SELECT set_config(%s, %s, true)", (ORG_SETTING, org))
            yield cur

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
        if dimensions > _MAX_INDEXED_DIMENSIONS:
            # Still stored and searchable exactly; HNSW on `vector` stops at 2,000 dimensions.
            log.warning("no HNSW index for %d dimensions (pgvector's limit is 2000)", dimensions)
            self._spaces.add(key)
            return
        name = f"memories_embedding_{dimensions}_{metric}_idx"
        with self._tx(None) as cur:
            cur.execute(
                "SELECT 1 FROM embedding_indexes WHERE dimensions = %s AND metric = %s", key
            )
            if cur.fetchone() is None:
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))
                cur.execute(
                    sql.SQL(
                        "CREATE INDEX IF NOT EXISTS {name} ON memories USING hnsw "
                        "((embedding::vector({dim})) {ops}) WITH (m = {m}, ef_construction = {ef}) "
                        "WHERE embedding_dim = {dim}"
                    ).format(
                        name=sql.Identifier(name),
                        dim=sql.Literal(dimensions),
                        ops=sql.SQL(_OPCLASSES[metric]),
                        m=sql.Literal(self.settings.hnsw_m),
                        ef=sql.Literal(self.settings.hnsw_ef_construction),
                    )
                )
                cur.execute(
                    "INSERT INTO embedding_indexes (dimensions, metric, index_name) "
                    "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    (dimensions, metric, name),
                )
        self._spaces.add(key)

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

    def _register_scopes(
        self, cur: psycopg.Cursor[dict[str, Any]], org: str, rows: Sequence[NewMemory]
    ) -> None:
        """Users, agents and rooms are registered on first use, so foreign keys always hold."""
        for table, attr in (("agents", "agent_id"), ("users", "user_id"), ("rooms", "room_id")):
            ids = sorted({getattr(r, attr) for r in rows if getattr(r, attr) is not None})
            if ids:
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} (organization_id, id) SELECT %s, unnest(%s::text[]) "
                        "ON CONFLICT DO NOTHING"
                    ).format(sql.Identifier(table)),
                    (org, ids),
                )

    def insert_memories(
        self, org: str, rows: Sequence[NewMemory], *, actor: str | None
    ) -> list[tuple[Memory, bool]]:
        if not rows:
            return []
        now = utcnow()
        with self._tx(org) as cur:
            self._register_scopes(cur, org, rows)
            if len(rows) == 1:
                cur.execute(
                    sql.SQL(
                        "INSERT INTO memories ({fields}) VALUES ({ph}) "
                        "ON CONFLICT {target} DO NOTHING RETURNING {cols}"
                    ).format(
                        fields=sql.SQL(", ").join(map(sql.Identifier, _INSERT_FIELDS)),
                        ph=sql.SQL(", ").join(sql.Placeholder() * len(_INSERT_FIELDS)),
                        target=_UNIQUE_TARGET,
                        cols=sql.SQL(", ").join(map(sql.Identifier, MEMORY_FIELDS)),
                    ),
                    self._values(org, rows[0], actor, now),
                )
                inserted = {r["id"]: _to_memory(r) for r in cur.fetchall()}
            else:
                inserted = self._copy_insert(cur, org, rows, actor, now)
            missing = [r for r in rows if r.id not in inserted]
            existing = self._find_duplicates(cur, org, missing) if missing else {}
        out: list[tuple[Memory, bool]] = []
        for r in rows:
            if r.id in inserted:
                out.append((inserted[r.id], True))
            else:
                out.append((existing[_dedup_key(r)], False))
        return out

    def _copy_insert(
        self,
        cur: psycopg.Cursor[dict[str, Any]],
        org: str,
        rows: Sequence[NewMemory],
        actor: str | None,
        now: datetime,
    ) -> dict[uuid.UUID, Memory]:
        """Batch path: binary COPY into a per-session staging table, then one INSERT…SELECT."""
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS engramdb_stage ("
            " organization_id text, id uuid, kind text, content text, agent_id text,"
            " user_id text, room_id text, data jsonb, importance real, tags text[],"
            " metadata jsonb, scope text, level text, content_hash text, is_unique boolean,"
            " related_ids uuid[], valid_from timestamptz, valid_to timestamptz,"
            " expires_at timestamptz, embedding_model text, embedding_dim smallint,"
            " embedding vector, created_at timestamptz, updated_at timestamptz,"
            " created_by_id text, last_updated_by_id text, ord integer"
            ") ON COMMIT DELETE ROWS"
        )
        fields = sql.SQL(", ").join(map(sql.Identifier, _INSERT_FIELDS))
        with cur.copy(sql.SQL("COPY engramdb_stage ({}, ord) FROM STDIN").format(fields)) as copy:
            for i, r in enumerate(rows):
                copy.write_row([*self._values(org, r, actor, now), i])
        # ORDER BY ord keeps the first of in-batch duplicates, as sequential adds would.
        cur.execute(
            sql.SQL(
                "INSERT INTO memories ({fields}) SELECT {fields} FROM engramdb_stage ORDER BY ord "
                "ON CONFLICT {target} DO NOTHING RETURNING {cols}"
            ).format(
                fields=fields,
                target=_UNIQUE_TARGET,
                cols=sql.SQL(", ").join(map(sql.Identifier, MEMORY_FIELDS)),
            )
        )
        result = {r["id"]: _to_memory(r) for r in cur.fetchall()}
        cur.execute("TRUNCATE engramdb_stage")
        return result

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
            found[(mem.content_hash, mem.kind, mem.agent_id, mem.user_id, mem.room_id)] = mem
        return found

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
            where = sql.SQL("{} AND m.id < %s").format(where)
            params.append(after)
        params.append(limit)
        with self._tx(org) as cur:
            cur.execute(
                sql.SQL("SELECT {} FROM memories m WHERE {} ORDER BY m.id DESC LIMIT %s").format(
                    _cols("m"), where
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
        return _to_memory(row)

    def delete_memory(
        self, org: str, memory_id: uuid.UUID, *, purge: bool, actor: str | None
    ) -> None:
        if not purge:
            self.update_memory(
                org, memory_id, {"deleted_at": utcnow()}, actor=actor, event="delete"
            )
            return
        with self._tx(org) as cur:
            cur.execute(
                "DELETE FROM memories WHERE organization_id = %s AND id = %s RETURNING id",
                (org, memory_id),
            )
            if cur.fetchone() is None:
                raise NotFound(f"memory {memory_id} not found", details={"id": str(memory_id)})

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

    def _use_exact(
        self, cur: psycopg.Cursor[dict[str, Any]], where: sql.Composable, params: list[Any]
    ) -> bool:
        """Exact search when the filtered set is small: it is both exact and faster there."""
        limit = self.settings.exact_search_max_rows
        cur.execute(
            sql.SQL(
                "SELECT count(*) AS n FROM (SELECT 1 FROM memories m WHERE {} LIMIT %s) s"
            ).format(where),
            [*params, limit + 1],
        )
        row = cur.fetchone()
        return row is not None and int(row["n"]) <= limit

    def search_memories(self, org: str, spec: SearchSpec) -> list[RawHit]:
        now = utcnow()
        ctes: list[sql.Composable] = []
        params: list[Any] = []
        sources: list[str] = []
        with self._tx(org) as cur:
            if spec.embedding is not None:
                vec = np.asarray(spec.embedding, dtype=np.float32)
                dim = int(vec.shape[0])
                vparams: list[Any] = []
                where = compile_query(org, spec.query, vparams, now)
                where = sql.SQL("{} AND m.embedding_dim = %s AND m.embedding_model = %s").format(
                    where
                )
                vparams.extend([dim, spec.embedding_model])
                exact = spec.exact
                if exact is None:
                    exact = dim > _MAX_INDEXED_DIMENSIONS or self._use_exact(cur, where, vparams)
                op = sql.SQL(_OPERATORS[spec.metric])
                if exact:
                    # Without the cast the expression does not match the HNSW index: exact scan.
                    dist = sql.SQL("(m.embedding {} %s)").format(op)
                else:
                    if spec.ef_search:
                        cur.execute(
                            "SELECT set_config('hnsw.ef_search', %s, true)", (str(spec.ef_search),)
                        )
                    dist = sql.SQL("(m.embedding::vector({d}) {op} %s::vector({d}))").format(
                        d=sql.Literal(dim), op=op
                    )
                ctes.append(
                    sql.SQL(
                        "v AS (SELECT m.id, {dist} AS dist FROM memories m WHERE {where} "
                        "ORDER BY {dist} LIMIT %s)"
                    ).format(dist=dist, where=where)
                )
                params.extend([vec, *vparams, vec, spec.limit])
                sources.append("v")
            if spec.text:
                tparams: list[Any] = [spec.text]
                where = compile_query(org, spec.query, tparams, now)
                ctes.append(
                    sql.SQL(
                        "t AS (SELECT m.id, ts_rank_cd(m.tsv, q.q) AS rank FROM memories m, "
                        "websearch_to_tsquery('english', %s) AS q(q) WHERE {} AND m.tsv @@ q.q "
                        "ORDER BY rank DESC, m.id DESC LIMIT %s)"
                    ).format(where)
                )
                params.extend([*tparams, spec.limit])
                sources.append("t")
            if not sources:
                return []
            ids = sql.SQL(" UNION ").join(
                sql.SQL("SELECT id FROM {}").format(sql.Identifier(s)) for s in sources
            )
            joins = sql.SQL(" ").join(
                sql.SQL("LEFT JOIN {s} ON {s}.id = m.id").format(s=sql.Identifier(s))
                for s in sources
            )
            dist_col = sql.SQL("v.dist") if "v" in sources else sql.SQL("NULL::float8")
            rank_col = sql.SQL("t.rank") if "t" in sources else sql.SQL("NULL::float8")
            params.append(org)
            cur.execute(
                sql.SQL(
                    "WITH {ctes} SELECT {cols}, {dist} AS _dist, {rank} AS _rank "
                    "FROM ({ids}) AS found JOIN memories m ON m.id = found.id "
                    "AND m.organization_id = %s {joins}"
                ).format(
                    ctes=sql.SQL(", ").join(ctes),
                    cols=_cols("m"),
                    dist=dist_col,
                    rank=rank_col,
                    ids=ids,
                    joins=joins,
                ),
                params,
            )
            rows = cur.fetchall()
        return [
            RawHit(
                memory=_to_memory(r),
                distance=None if r["_dist"] is None else float(r["_dist"]),
                text_rank=None if r["_rank"] is None else float(r["_rank"]),
            )
            for r in rows
        ]

    def record_access(self, org: str, counts: Mapping[uuid.UUID, int], at: datetime) -> None:
        if not counts:
            return
        ids = list(counts)
        with self._tx(org) as cur:
            cur.execute(
                "UPDATE memories m SET access_count = m.access_count + c.n, "
                "last_accessed_at = greatest(m.last_accessed_at, %s) "
                "FROM (SELECT unnest(%s::uuid[]) AS id, unnest(%s::int[]) AS n) c "
                "WHERE m.organization_id = %s AND m.id = c.id",
                (at, ids, [counts[i] for i in ids], org),
            )


def _dedup_key(r: NewMemory) -> tuple[Any, ...]:
    return (r.content_hash, r.kind, r.agent_id, r.user_id, r.room_id)
