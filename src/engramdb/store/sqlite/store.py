"""SQLite store: memories with FTS5 text search and exact NumPy vector search, one writer."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from ...errors import ConfigurationError, InvalidInput, MigrationRequired, NotFound
from ...migrations import runner
from ...models import Memory, MemoryVersion, utcnow
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
from .compile import compile_query
from .connection import Database, parse_url
from .errors import translate_errors
from .resources import SQLiteResources
from .security import SQLiteSecurity, write_audit
from .text import fts_query
from .values import (
    MEMORY_FIELDS,
    from_micros,
    from_uuid,
    memory_columns,
    row_to_memory,
    to_json,
    to_micros,
    to_uuid,
    vector_to_blob,
)
from .vectors import VectorCache

__all__ = ["SQLiteStore"]

log = logging.getLogger(__name__)

_INSERT_FIELDS = [
    "organization_id", "id", "kind", "content", "agent_id", "user_id", "room_id", "data",
    "importance", "tags", "metadata", "scope", "level", "content_hash", "is_unique",
    "related_ids", "valid_from", "valid_to", "expires_at", "embedding_model", "embedding_dim",
    "embedding", "created_at", "updated_at", "created_by_id", "last_updated_by_id",
]  # fmt: skip
_INSERT = (
    f"INSERT INTO memories ({', '.join(_INSERT_FIELDS)}) "
    f"VALUES ({', '.join('?' * len(_INSERT_FIELDS))}) ON CONFLICT DO NOTHING"
)
#: Columns update_memory may set, and how a value is stored.
_UPDATE_CODECS: dict[str, Any] = {
    "content": str, "kind": str, "content_hash": str, "scope": None, "level": None,
    "embedding_model": None, "importance": float, "data": to_json, "metadata": to_json,
    "tags": to_json, "related_ids": lambda v: to_json([str(x) for x in v]),
    "valid_from": to_micros, "valid_to": to_micros, "expires_at": to_micros,
    "deleted_at": to_micros,
}  # fmt: skip
_CHANGES_KEPT = 10_000  # vector change-log entries kept (older caches reload in full)
#: Rows by a JSON list of seqs. CROSS JOIN fixes the order (SQLite never reorders it): one rowid
#: lookup per seq. Written as ``seq IN (SELECT … json_each)``, the planner may prefer an index
#: on organization_id and scan the whole organization instead (19 ms at 100k rows).
_BY_SEQ = "json_each(?) AS s CROSS JOIN memories AS m ON m.seq = s.value"


def _dedup_key(r: NewMemory | Memory) -> tuple[Any, ...]:
    return (r.content_hash, r.kind, r.agent_id, r.user_id, r.room_id)


def _json_ids(values: Sequence[int]) -> str:
    return json.dumps(list(values))


class SQLiteStore(SQLiteSecurity, SQLiteResources):
    """Store over one SQLite file (WAL) or a private in-memory database."""

    dialect = "sqlite"
    capabilities = Capabilities(
        row_level_security=False,
        reasons={
            "row_level_security": "SQLite has no row-level security; every query carries the "
            "organization instead (engramdb.store.sqlite.compile)",
        },
    )

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.settings = settings
        self._db: Database | None = None
        self._target = parse_url(url)
        self._vectors = VectorCache()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def db(self) -> Database:
        if self._db is None:
            raise ConfigurationError("the store is closed")
        return self._db

    def connect_raw(self) -> Any:
        """A plain connection to this store's database (migrations, maintenance)."""
        return self.db.raw()

    def open(self, *, migrate: bool) -> SQLiteStore:
        self._db = Database(self._target, self.settings.statement_timeout_ms / 1000)
        try:
            if migrate:
                with translate_errors():
                    runner.upgrade(self.connect_raw, self.dialect)
            else:
                current, head = self.schema_status()
                if current != head:
                    raise MigrationRequired(
                        f"the database schema is at {current or 'nothing'} but this engramdb "
                        f"needs {head}: run `engramdb db upgrade`",
                        details={"current": current, "head": head},
                    )
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._vectors.clear()

    def ping(self) -> None:
        with self.db.read() as conn:
            conn.execute("SELECT 1").fetchone()

    def schema_status(self) -> tuple[str | None, str]:
        with translate_errors():
            return runner.current(self.connect_raw, self.dialect), runner.head()

    # -- organizations and embedding spaces ----------------------------------------------------

    def ensure_organization(self, org: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO organizations (id, name) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (org, org),
            )

    def ensure_embedding_space(self, dimensions: int, metric: str) -> None:
        """Nothing to build: vectors are searched exactly, whatever their dimensions."""

    # -- memories: writes -----------------------------------------------------------------------

    @staticmethod
    def _values(org: str, row: NewMemory, actor: str | None, now: int) -> tuple[Any, ...]:
        emb = row.embedding
        return (
            org, to_uuid(row.id), row.kind, row.content, row.agent_id, row.user_id, row.room_id,
            to_json(row.data), float(row.importance), to_json(row.tags), to_json(row.metadata),
            row.scope, row.level, row.content_hash, row.is_unique,
            to_json([str(x) for x in row.related_ids]), to_micros(row.valid_from),
            to_micros(row.valid_to), to_micros(row.expires_at), row.embedding_model,
            None if emb is None else len(emb), None if emb is None else vector_to_blob(emb),
            now if row.created_at is None else to_micros(row.created_at), now, actor, actor,
        )  # fmt: skip

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
        now = to_micros(utcnow())
        assert now is not None
        with self.db.write() as conn:
            before = self._write_rows(conn, org, rows, actor, now)
            inserted = {
                m.id: m
                for m in map(
                    row_to_memory,
                    conn.execute(
                        f"SELECT {memory_columns()} FROM memories m WHERE m.seq > ?", (before,)
                    ),
                )
            }
            if audit is not None and rows[0].id in inserted:
                write_audit(conn, [audit(rows[0].id)])
            missing = [r for r in rows if r.id not in inserted]
            existing = self._find_duplicates(conn, org, missing) if missing else {}
        out: list[tuple[Memory, bool]] = []
        for r in rows:
            if r.id in inserted:
                out.append((inserted[r.id], True))
            else:
                out.append((existing[_dedup_key(r)], False))
        return out

    def _write_rows(
        self, conn: Any, org: str, rows: Sequence[NewMemory], actor: str | None, now: int
    ) -> int:
        """Insert ``rows`` in the caller's write transaction; returns the memories sequence
        number before them (this batch's new rows are those past it)."""
        # Users, agents and rooms are registered on first use, so foreign keys always hold.
        for table, attr in (("agents", "agent_id"), ("users", "user_id"), ("rooms", "room_id")):
            ids = sorted({getattr(r, attr) for r in rows if getattr(r, attr) is not None})
            conn.executemany(
                f"INSERT INTO {table} (organization_id, id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [(org, i) for i in ids],
            )
        before = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'memories'").fetchone()
        # One writer at a time and AUTOINCREMENT: this batch's rows are those past `before`.
        # In order, so the first of in-batch duplicates is kept, as sequential adds would.
        conn.executemany(_INSERT, [self._values(org, r, actor, now) for r in rows])
        return 0 if before is None else int(before[0])

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
        """Every batch in one write transaction; there is no vector index to rebuild here."""
        del dimensions, metric, rebuild_index
        stats = ImportStats()
        now = to_micros(utcnow())
        assert now is not None
        if self._target.memory:
            # One shared connection: whatever produces the batches may read through it, which
            # it cannot do inside the write transaction, so they are all produced first.
            batches = [list(b) for b in batches]
        with self.db.write() as conn:
            for batch in batches:
                if not batch:
                    continue
                self._check_related(conn, org, batch)
                before = self._write_rows(conn, org, batch, actor, now)
                (created,) = conn.execute(
                    "SELECT count(*) FROM memories WHERE seq > ?", (before,)
                ).fetchone()
                stats.rows += len(batch)
                stats.created += created
                stats.duplicates += len(batch) - created
                if on_progress is not None:
                    on_progress(stats)
        stats.phase = "done"
        if on_progress is not None:
            on_progress(stats)
        return stats

    @staticmethod
    def _check_related(conn: Any, org: str, rows: Sequence[NewMemory]) -> None:
        """Every ``related_ids`` entry names a live memory (this transaction's included)."""
        related = sorted({rid for r in rows for rid in r.related_ids})
        if not related:
            return
        marks = ", ".join("?" * len(related))
        found = {
            from_uuid(x)
            for (x,) in conn.execute(
                f"SELECT m.id FROM memories m WHERE m.organization_id = ? "
                f"AND m.deleted_at IS NULL AND m.id IN ({marks})",
                (org, *(to_uuid(r) for r in related)),
            )
        }
        for r in rows:
            for rid in r.related_ids:
                if rid not in found:
                    raise NotFound(
                        f"related memory {rid} not found",
                        details={"memory": str(r.id), "related_id": str(rid)},
                    )

    @staticmethod
    def _find_duplicates(
        conn: Any, org: str, rows: Sequence[NewMemory]
    ) -> dict[tuple[Any, ...], Memory]:
        # Each key is looked up in the dedup index itself (its expressions verbatim): a
        # condition on the hashes alone lets SQLite scan the organization's part of the index.
        keys = sorted(
            {(r.kind, r.agent_id or "", r.user_id or "", r.room_id or "", r.content_hash)
             for r in rows}
        )  # fmt: skip
        found: dict[tuple[Any, ...], Memory] = {}
        for row in conn.execute(
            f"SELECT {memory_columns()} FROM json_each(?) AS k CROSS JOIN memories AS m "
            "ON m.organization_id = ? AND m.kind = k.value ->> 0 "
            "AND ifnull(m.agent_id, '') = k.value ->> 1 AND ifnull(m.user_id, '') = k.value ->> 2 "
            "AND ifnull(m.room_id, '') = k.value ->> 3 AND m.content_hash = k.value ->> 4 "
            "WHERE m.is_unique AND m.deleted_at IS NULL",
            (json.dumps(keys), org),
        ):
            mem = row_to_memory(row)
            found[_dedup_key(mem)] = mem
        return found

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
        sets: list[str] = []
        params: list[Any] = []
        for name, value in changes.items():
            if name == "embedding":
                sets.append("embedding = ?, embedding_dim = ?")
                params.extend(
                    [None, None] if value is None else [vector_to_blob(value), len(value)]
                )
                continue
            if name not in _UPDATE_CODECS:
                raise InvalidInput(f"cannot update {name!r}", details={"field": name})
            codec = _UPDATE_CODECS[name]
            sets.append(f"{name} = ?")
            params.append(value if value is None or codec is None else codec(value))
        now = utcnow()
        with self.db.write() as conn:
            row = conn.execute(
                f"SELECT {memory_columns()}, m.seq FROM memories m "
                "WHERE m.organization_id = ? AND m.id = ? AND m.deleted_at IS NULL",
                (org, to_uuid(memory_id)),
            ).fetchone()
            if row is None:
                raise NotFound(f"memory {memory_id} not found", details={"id": str(memory_id)})
            old = row_to_memory(row[: len(MEMORY_FIELDS)])
            conn.execute(
                "INSERT INTO memory_history (organization_id, id, memory_id, version, event, "
                "snapshot, changed_at, changed_by_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    org,
                    to_uuid(uuid.uuid4()),
                    to_uuid(memory_id),
                    old.version,
                    event,
                    old.model_dump_json(exclude={"embedding"}),
                    to_micros(now),
                    actor,
                ),
            )
            updated = conn.execute(
                f"UPDATE memories AS m SET {''.join(s + ', ' for s in sets)}"
                "version = version + 1, updated_at = ?, last_updated_by_id = ? "
                f"WHERE m.seq = ? RETURNING {memory_columns('')}",
                [*params, to_micros(now), actor, row[-1]],
            ).fetchone()
            if "embedding" in changes:
                self._trim_vector_changes(conn)
            memory = row_to_memory(updated)
            if audit is not None:
                write_audit(conn, [audit(memory)])
        return memory

    @staticmethod
    def _trim_vector_changes(conn: Any) -> None:
        conn.execute(
            "DELETE FROM memory_vector_changes WHERE version <= "
            "(SELECT seq FROM sqlite_sequence WHERE name = 'memory_vector_changes') - ?",
            (_CHANGES_KEPT,),
        )

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
        with self.db.write() as conn:
            gone = conn.execute(
                "DELETE FROM memories WHERE organization_id = ? AND id = ? RETURNING seq",
                (org, to_uuid(memory_id)),
            ).fetchone()
            if gone is None:
                raise NotFound(f"memory {memory_id} not found", details={"id": str(memory_id)})
            self._trim_vector_changes(conn)
            if audit is not None:
                write_audit(conn, [audit])

    def record_access(self, org: str, counts: Mapping[uuid.UUID, int], at: datetime) -> None:
        if not counts:
            return
        moment = to_micros(at)
        with self.db.write() as conn:
            conn.executemany(
                "UPDATE memories SET access_count = access_count + ?, "
                "last_accessed_at = max(coalesce(last_accessed_at, ?), ?) "
                "WHERE organization_id = ? AND id = ?",
                [(n, moment, moment, org, to_uuid(i)) for i, n in counts.items()],
            )

    # -- memories: reads ------------------------------------------------------------------------

    def get_memory(
        self,
        org: str,
        memory_id: uuid.UUID,
        *,
        include_deleted: bool = False,
        with_embedding: bool = False,
    ) -> Memory:
        with self.db.read() as conn:
            row = conn.execute(
                f"SELECT {memory_columns('m', with_embedding)} FROM memories m "
                "WHERE m.organization_id = ? AND m.id = ?",
                (org, to_uuid(memory_id)),
            ).fetchone()
        if row is None or (
            row[MEMORY_FIELDS.index("deleted_at")] is not None and not include_deleted
        ):
            raise NotFound(f"memory {memory_id} not found", details={"id": str(memory_id)})
        return row_to_memory(row)

    def list_memories(
        self, org: str, query: MemoryQuery, *, limit: int, after: uuid.UUID | None
    ) -> list[Memory]:
        where, params = compile_query(org, query, utcnow())
        if after is not None:
            where += " AND m.id < ?"
            params.append(to_uuid(after))
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT {memory_columns()} FROM memories m WHERE {where} "
                "ORDER BY m.id DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [row_to_memory(r) for r in rows]

    def memory_history(self, org: str, memory_id: uuid.UUID) -> list[MemoryVersion]:
        with self.db.read() as conn:
            current = conn.execute(
                f"SELECT {memory_columns()} FROM memories m "
                "WHERE m.organization_id = ? AND m.id = ?",
                (org, to_uuid(memory_id)),
            ).fetchone()
            if current is None:
                raise NotFound(f"memory {memory_id} not found", details={"id": str(memory_id)})
            rows = conn.execute(
                "SELECT version, event, snapshot, changed_at, changed_by_id FROM memory_history "
                "WHERE organization_id = ? AND memory_id = ? ORDER BY version",
                (org, to_uuid(memory_id)),
            ).fetchall()
        out = [
            MemoryVersion(
                memory_id=memory_id,
                version=version,
                event=event,
                memory=Memory.model_validate_json(snapshot),
                changed_at=from_micros(changed_at),
                changed_by_id=changed_by,
            )
            for version, event, snapshot, changed_at, changed_by in rows
        ]
        mem = row_to_memory(current)
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

    # No asynchronous path: sqlite3 is synchronous, so a search on an event loop runs
    # search_memories in a thread (the Store protocol's rule for ``None``).

    async def open_async(self) -> bool:
        return False

    async def close_async(self) -> None:
        return None

    async def search_memories_async(self, org: str, spec: SearchSpec) -> list[RawHit] | None:
        return None

    def search_memories(self, org: str, spec: SearchSpec) -> list[RawHit]:
        now = utcnow()
        dist: dict[int, float] = {}
        if spec.embedding is not None:
            dist = self._nearest(org, spec, now)
        fts = fts_query(spec.text) if spec.text else None
        ranks: dict[int, float] = {}
        with self.db.read() as conn:
            if fts is not None:
                where, params = compile_query(org, spec.query, now)
                ranks = {
                    seq: float(rank)
                    for seq, rank in conn.execute(
                        "SELECT m.seq, -bm25(memories_fts) AS rank FROM memories_fts "
                        "JOIN memories m ON m.seq = memories_fts.rowid "
                        f"WHERE memories_fts MATCH ? AND {where} "
                        "ORDER BY rank DESC, m.id DESC LIMIT ?",
                        [fts, *params, spec.limit],
                    )
                }
            found = sorted(set(dist) | set(ranks))
            if not found:
                return []
            # The query's conditions again: a vector hit changed since it was found is dropped.
            where, params = compile_query(org, spec.query, now)
            rows = conn.execute(
                f"SELECT {memory_columns()}, m.seq FROM {_BY_SEQ} WHERE {where}",
                [_json_ids(found), *params],
            ).fetchall()
        return [
            RawHit(
                memory=row_to_memory(r[:-1]), distance=dist.get(r[-1]), text_rank=ranks.get(r[-1])
            )
            for r in rows
        ]

    def _nearest(self, org: str, spec: SearchSpec, now: datetime) -> dict[int, float]:
        """seq -> distance of the exact nearest vectors that pass the query's conditions."""
        assert spec.embedding is not None
        query_vec = np.ascontiguousarray(spec.embedding, dtype=np.float32)
        dim = int(query_vec.shape[0])
        where, params = compile_query(org, spec.query, now)
        where += " AND m.embedding_dim = ? AND m.embedding_model = ?"
        params += [dim, spec.embedding_model]
        # Lock order: the cache, then a connection (the :memory: connection is shared). The
        # filter is checked in the very snapshot the cache was brought up to.
        with self._vectors.lock, self.db.read() as conn:
            self._vectors.sync(conn, org)

            def check(seqs: list[int]) -> set[int]:
                return {
                    r[0]
                    for r in conn.execute(
                        f"SELECT m.seq FROM {_BY_SEQ} WHERE {where}", [_json_ids(seqs), *params]
                    )
                }

            def filtered() -> set[int]:
                return {
                    r[0]
                    for r in conn.execute(f"SELECT m.seq FROM memories m WHERE {where}", params)
                }

            def probe(cap: int) -> list[int] | None:
                seqs = [
                    r[0]
                    for r in conn.execute(
                        f"SELECT m.seq FROM memories m WHERE {where} LIMIT ?", [*params, cap + 1]
                    )
                ]
                return None if len(seqs) > cap else seqs

            nearest = self._vectors.nearest(
                (org, spec.embedding_model or "", dim),
                query_vec,
                spec.metric,
                spec.limit,
                probe=None if spec.query.filter is None else probe,
                check=check,
                filtered=filtered,
            )
        return dict(nearest)
