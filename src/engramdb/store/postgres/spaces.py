"""Embedding spaces: the HNSW index of each (dimensions, metric), its name, its DDL, and its
rebuild with other parameters while the store stays in use."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ...errors import Conflict, InvalidInput, NotFound

__all__ = [
    "MAX_INDEXED_DIMENSIONS",
    "OPCLASS_SUFFIX",
    "REGISTER_INDEX_SQL",
    "RebuiltIndex",
    "index_ddl",
    "index_name",
    "rebuild_indexes",
]

OPCLASS_SUFFIX = {"cosine": "_cosine_ops", "l2": "_l2_ops", "ip": "_ip_ops"}
#: pgvector's HNSW dimension limit per stored type; past it a space is searched exactly.
MAX_INDEXED_DIMENSIONS = {"vector": 2000, "halfvec": 4000}
#: Names the index of the space (dimensions, metric) in the registry (parameters in that order).
REGISTER_INDEX_SQL = (
    "UPDATE embedding_indexes SET index_name = %s WHERE dimensions = %s AND metric = %s"
)
#: Suffix of an index while it is rebuilt beside the one in use.
_REBUILD_SUFFIX = "_rebuild"
#: The advisory lock one rebuild holds: two would drop each other's half-built index.
_REBUILD_LOCK = "hashtext('engramdb_rebuild_indexes')"


def index_name(dimensions: int, metric: str, vector_type: str) -> str:
    suffix = "" if vector_type == "vector" else f"_{vector_type}"
    return f"memories_embedding_{dimensions}_{metric}{suffix}_idx"


def index_ddl(
    name: str,
    dimensions: int,
    metric: str,
    vector_type: str,
    *,
    m: int,
    ef_construction: int,
    concurrently: bool = False,
) -> sql.Composed:
    """``CREATE INDEX`` of a space's HNSW index: a partial expression index per space, as one
    table holds vectors of any dimension. ``concurrently``: built without holding off writers
    (outside a transaction block only)."""
    return sql.SQL(
        "CREATE INDEX {how}IF NOT EXISTS {name} ON memories USING hnsw "
        "((embedding::{vtype}({dim})) {ops}) WITH (m = {m}, ef_construction = {ef}) "
        "WHERE embedding_dim = {dim}"
    ).format(
        how=sql.SQL("CONCURRENTLY " if concurrently else ""),
        name=sql.Identifier(name),
        vtype=sql.SQL(vector_type),
        dim=sql.Literal(dimensions),
        ops=sql.SQL(vector_type + OPCLASS_SUFFIX[metric]),
        m=sql.Literal(m),
        ef=sql.Literal(ef_construction),
    )


@dataclass(frozen=True, slots=True)
class RebuiltIndex:
    """A space's HNSW index as :func:`rebuild_indexes` left it."""

    dimensions: int
    metric: str
    index_name: str
    #: The index it replaced (``None``: the space had none left, e.g. dropped by hand).
    previous: str | None
    vector_type: str
    m: int
    ef_construction: int
    seconds: float


def rebuild_indexes(
    conn: psycopg.Connection[Any],
    *,
    vector_type: str,
    m: int,
    ef_construction: int,
    dimensions: int | None = None,
    metric: str | None = None,
    maintenance_work_mem: str | None = None,
    on_build: Callable[[int, str, str], None] | None = None,
) -> list[RebuiltIndex]:
    """Rebuilds the HNSW index of every embedding space (or of those with ``dimensions`` and
    ``metric``) with these parameters, while the store stays in use; returns what was built.

    ``conn`` is the schema owner's (indexes are the owner's to build and drop), not in a
    transaction. Each new index is built with ``CREATE INDEX CONCURRENTLY`` beside the one in
    use, which searches keep using meanwhile, and writers are not held off; then the old one is
    dropped concurrently and the new one takes the space's name. The registry
    (``embedding_indexes``) names an index that exists at every step, so an interrupted rebuild
    leaves a usable space (its leftover half-built index is dropped by the next rebuild).
    ``maintenance_work_mem`` (e.g. ``"2GB"``) is set for the builds: a graph that does not fit
    in it builds far slower. ``on_build(dimensions, metric, name)`` is called as each build
    starts (it takes minutes at a million vectors).
    """
    if metric is not None and metric not in OPCLASS_SUFFIX:
        raise InvalidInput(f"unknown metric {metric!r}: one of {', '.join(OPCLASS_SUFFIX)}")
    if vector_type not in MAX_INDEXED_DIMENSIONS:
        raise InvalidInput(f"unknown vector type {vector_type!r}: vector or halfvec")
    conn.autocommit = True
    if maintenance_work_mem is not None:
        conn.execute(
            "SELECT set_config('maintenance_work_mem', %s, false)", (maintenance_work_mem,)
        )
    row = conn.execute(f"SELECT pg_try_advisory_lock({_REBUILD_LOCK})").fetchone()
    if row is None or not row[0]:
        raise Conflict("another rebuild of the vector indexes is running on this database")
    try:
        spaces = conn.execute(
            "SELECT dimensions, metric, index_name FROM embedding_indexes "
            "WHERE (%s::int IS NULL OR dimensions = %s) AND (%s::text IS NULL OR metric = %s) "
            "ORDER BY dimensions, metric",
            (dimensions, dimensions, metric, metric),
        ).fetchall()
        wanted = [] if dimensions is None else [f"{dimensions} dimensions"]
        wanted += [] if metric is None else [f"metric {metric}"]
        if not spaces and wanted:
            raise NotFound(
                f"no embedding space with {' and '.join(wanted)}",
                details={"dimensions": dimensions, "metric": metric},
            )
        # Every space is checked before anything is built: none is half done for a bad request.
        for dim, _, _ in spaces:
            if dim > MAX_INDEXED_DIMENSIONS[vector_type]:
                raise InvalidInput(
                    f"pgvector indexes {vector_type} up to {MAX_INDEXED_DIMENSIONS[vector_type]} "
                    f"dimensions; the space of {dim} cannot be rebuilt with it",
                    details={"dimensions": dim, "vector_type": vector_type},
                )
        return [
            _rebuild(conn, dim, met, old, vector_type, m, ef_construction, on_build)
            for dim, met, old in spaces
        ]
    finally:
        # A broken connection released the lock with its session, and its error is the one
        # to report.
        with contextlib.suppress(psycopg.Error):
            conn.execute(f"SELECT pg_advisory_unlock({_REBUILD_LOCK})")


def _rebuild(
    conn: psycopg.Connection[Any],
    dimensions: int,
    metric: str,
    old: str,
    vector_type: str,
    m: int,
    ef_construction: int,
    on_build: Callable[[int, str, str], None] | None,
) -> RebuiltIndex:
    final = index_name(dimensions, metric, vector_type)
    building = final + _REBUILD_SUFFIX

    def drop(name: str) -> None:
        conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name)))

    def register(name: str) -> None:
        conn.execute(REGISTER_INDEX_SQL, (name, dimensions, metric))

    def exists(name: str) -> bool:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        return row is not None and bool(row[0])

    def take_name(name: str) -> None:
        """The space's valid index ``name`` takes the final name (and the registry's)."""
        with conn.transaction():
            conn.execute(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    sql.Identifier(name), sql.Identifier(final)
                )
            )
            register(final)

    previous = old if exists(old) else None
    if previous == building:
        # An interrupted rebuild registered its new index and stopped before renaming it:
        # that step is finished first, so the index in use is the one to replace.
        drop(final)
        take_name(building)
        previous = final
    # Left over by an interrupted rebuild (a failed CONCURRENTLY build stays, invalid).
    drop(building)
    if on_build is not None:
        on_build(dimensions, metric, final)
    started = time.perf_counter()
    ddl = index_ddl(
        building, dimensions, metric, vector_type, m=m, ef_construction=ef_construction,
        concurrently=True,
    )  # fmt: skip
    try:
        conn.execute(ddl)
    except BaseException:
        with contextlib.suppress(psycopg.Error):  # else the next rebuild drops it
            drop(building)
        raise
    seconds = time.perf_counter() - started
    # The new index is valid: the registry names it while the old ones go.
    register(building)
    drop(final)  # the index in use when the type is unchanged; else one made by hand
    if previous is not None and previous != final:
        drop(previous)
    take_name(building)
    return RebuiltIndex(
        dimensions=dimensions, metric=metric, index_name=final, previous=previous,
        vector_type=vector_type, m=m, ef_construction=ef_construction, seconds=seconds,
    )  # fmt: skip
