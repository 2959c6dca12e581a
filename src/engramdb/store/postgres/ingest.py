"""Writing memories: one row in one round trip, batches through binary COPY (staged where
duplicates may be), and the bulk import."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ...errors import NotFound
from ...models import Memory, utcnow
from ...models.security import AuditEntry
from ..base import AuditCreated, ImportStats, NewMemory
from ..security import AUDIT_FIELDS
from .core import StoreCore
from .rows import INSERT_FIELDS, INSERT_TYPES, MEMORY_FIELDS, cols, render, to_memory
from .security import audit_values
from .spaces import MAX_INDEXED_DIMENSIONS, REGISTER_INDEX_SQL, index_name

if TYPE_CHECKING:
    from .search import TtlCache

__all__ = ["IngestMixin"]

#: audit_log's column types, for the entry written with a single insert (_insert_one_sql).
_AUDIT_TYPES = {
    "organization_id": "text", "id": "uuid", "actor_type": "text", "actor_id": "text",
    "action": "text", "resource_type": "text", "resource_id": "text", "before": "jsonb",
    "after": "jsonb", "request_id": "text", "created_at": "timestamptz",
}  # fmt: skip
_COPY_TYPES = [*INSERT_TYPES.values(), "integer"]  # + ord, the row's place in its batch
_STAGE = "engramdb_stage"
#: Staged rows inserted per statement (see IngestMixin._insert_staged_rows).
_INSERT_CHUNK = 1000
_UNIQUE_TARGET = sql.SQL(
    "(organization_id, kind, agent_id, user_id, room_id, content_hash) "
    "WHERE is_unique AND deleted_at IS NULL"
)
#: (table, column) of the scopes registered on first use, so foreign keys always hold.
_SCOPES = (("agents", "agent_id"), ("users", "user_id"), ("rooms", "room_id"))


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
    """The single-row insert of :meth:`IngestMixin._insert_one`, rendered once per shape
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
            fields=sql.SQL(", ").join(map(sql.Identifier, INSERT_FIELDS)),
            ph=sql.SQL(", ").join(sql.Placeholder() * len(INSERT_FIELDS)),
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
        ).format(query, cols("m"), sql.SQL(" AND ").join(conds))
    return render(query)


class IngestMixin(StoreCore):
    """Mixed into :class:`~.store.PostgresStore`: the writes of memories."""

    if TYPE_CHECKING:
        _spaces: dict[tuple[int, str], str | None]
        _plans: TtlCache
        _generic_rows: TtlCache

        def _index_ddl(
            self, name: str, dimensions: int, metric: str, vector_type: str
        ) -> sql.Composed: ...

    # -- single rows and batches -------------------------------------------------------------

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
                staged = self._insert_staged_rows(cur, len(rows), cols("m"))
                inserted = {r["id"]: to_memory(r) for r in staged}
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
        return [(to_memory(r), bool(r["_created"])) for r in rows]

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
                    for k, v in INSERT_TYPES.items()
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
        fields = sql.SQL(", ").join(map(sql.Identifier, INSERT_FIELDS + ["ord"] * staged))
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
        fields = sql.SQL(", ").join(map(sql.Identifier, INSERT_FIELDS))
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
            ).format(cols=cols("m")),
            (org, sorted({k[0] for k in keys})),
        )
        found: dict[tuple[Any, ...], Memory] = {}
        for row in cur.fetchall():
            mem = to_memory(row)
            found[_dedup_key(mem)] = mem
        return found

    # -- bulk import ---------------------------------------------------------------------------

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
                cur.execute(REGISTER_INDEX_SQL, (name, dimensions, metric))
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
        if dimensions > MAX_INDEXED_DIMENSIONS[vtype]:
            vtype = "vector" if dimensions <= MAX_INDEXED_DIMENSIONS["vector"] else "halfvec"
        return index_name(dimensions, metric, vtype), vtype


def _dedup_key(r: NewMemory | Memory) -> tuple[Any, ...]:
    return (r.content_hash, r.kind, r.agent_id, r.user_id, r.room_id)
