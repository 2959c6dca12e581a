"""Raw pgvector baselines: what PostgreSQL + pgvector do on their own, with no library on top.

The table is shaped like a memories table (see :data:`CREATE_TABLE`), with a primary key,
B-tree indexes on ``(organization_id, agent_id)`` and ``(organization_id, user_id)`` and an HNSW
index (cosine, with engramdb's default ``m`` and ``ef_construction``, so both build the same graph;
``--hnsw-m`` sets ``m`` on both sides).
Measured, in this order:

1. ``raw.copy.empty``: binary COPY of the ``n`` base rows into the empty, index-less table;
   then each index build (``raw.index.*``), then ``VACUUM ANALYZE``.
2. ``raw.search.unfiltered.*``: top-k with HNSW, and exact (full scan) for reference.
3. ``raw.search.<bucket>.<plan>``: filtered top-k per selectivity bucket with each of the
   :data:`PLANS` that applies (:func:`plans_for`). Then ``raw.search.<bucket>.rows``: the
   fastest of those plans meeting the recall target (:func:`search_rows`) at returning the
   memories' columns as well as the distance, which is what a memory search returns; the
   plans above return only ``(id, distance)``.
4. ``raw.copy.indexed``, ``raw.insert.executemany``, ``raw.insert.commit_per_row``: ingest
   extra rows into the table that already holds ``n`` indexed rows (after the searches, so
   searches see exactly the base rows the ground truth was computed on).
5. ``raw.insert.concurrent.t<T>``: one INSERT + COMMIT per row from ``T`` writer threads at once,
   each on its own connection (:data:`WRITER_THREADS`): how durable single-row writes scale when
   PostgreSQL can flush several transactions' commit records with one WAL write (group commit).

The table is then vacuumed (untimed), so that autovacuum has no work left on it while the next
suite is timed. The database stays for the rest of the run: the engramdb suite inserts more
single rows into it, alternating with its own single adds of the same rows
(``raw.insert.interleaved``). Every single-row measurement writes extra rows no earlier one
wrote (``registry.interleaved_slice``): an HNSW graph takes a vector it already holds faster
than a new one.

All queries are prepared, take the query vector in binary (pgvector's psycopg adapter), and
run with ``plan_cache_mode = force_custom_plan``: psycopg prepares statements and PostgreSQL
would otherwise switch to a value-blind generic plan after five executions, making the plan
(and the figures) depend on which bucket happened to run first.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb

from engramdb.settings import Settings
from engramdb.store.postgres.spaces import index_name

from .measure import LatencyStats, SearchResult, Timer, run_queries
from .registry import (
    Context,
    Measurement,
    bench,
    concurrent_slices,
)
from .workload import COLUMNS, ORGANIZATION, PG_TYPES, QuerySet, Workload

TABLE = "memories"
#: Recall@k a raw plan needs to be "the best plan" for a bucket (the issue's targets): scope
#: filters, and any selectivity (unfiltered included).
RECALL_SCOPED = 0.99
RECALL_ANY = 0.98
#: What ``raw.search.<bucket>.rows`` returns: every column of the row but the vector.
ROW_COLUMNS = tuple(c for c in COLUMNS if c != "embedding")
HNSW_INDEX = "memories_embedding_idx"
# The graph engramdb builds by default: comparing searches (and builds) over different graphs
# would measure the parameters, not the library.
HNSW_M = Settings.hnsw_m
HNSW_EF_CONSTRUCTION = Settings.hnsw_ef_construction

CREATE_TABLE = """
CREATE TABLE memories (
    id              uuid        NOT NULL,
    organization_id text        NOT NULL,
    agent_id        text,
    user_id         text,
    room_id         text,
    kind            text        NOT NULL,
    content         text        NOT NULL,
    tags            text[]      NOT NULL DEFAULT '{{}}',
    metadata        jsonb       NOT NULL DEFAULT '{{}}',
    importance      real        NOT NULL DEFAULT 0.5,
    created_at      timestamptz NOT NULL DEFAULT now(),
    embedding       vector({dim}) NOT NULL
)
"""


def indexes(m: int | None = None) -> tuple[tuple[str, str, str], ...]:
    """``(measurement suffix, index name, DDL)``, built in this order after the initial COPY;
    the HNSW graph with ``m`` (``--hnsw-m``; engramdb's default when ``None``)."""
    return (
        ("pk", "memories_pkey", "ALTER TABLE memories ADD PRIMARY KEY (id)"),
        (
            "btree_agent",
            "memories_org_agent_idx",
            "CREATE INDEX memories_org_agent_idx ON memories (organization_id, agent_id)",
        ),
        (
            "btree_user",
            "memories_org_user_idx",
            "CREATE INDEX memories_org_user_idx ON memories (organization_id, user_id)",
        ),
        (
            "hnsw",
            HNSW_INDEX,
            f"CREATE INDEX {HNSW_INDEX} ON memories USING hnsw (embedding vector_cosine_ops)"
            f" WITH (m = {HNSW_M if m is None else m}, ef_construction = {HNSW_EF_CONSTRUCTION})",
        ),
    )


COPY_SQL = f"COPY memories ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
INSERT_SQL = (
    f"INSERT INTO memories ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * (len(COLUMNS) - 1))}"
    ", %b)"
)


@dataclass(frozen=True)
class Plan:
    """One way of running a (filtered) top-k query."""

    name: str
    description: str
    settings: dict[str, str]
    exact: bool  # use the materialized-CTE form, which cannot use the HNSW index
    uses_hnsw: bool | None  # what EXPLAIN must show; None = whatever the planner picks
    #: hnsw.ef_search for this plan; None = the run's ``--ef-search``.
    ef_search: int | None = None
    #: Only for buckets aiming at this selectivity or more (see :data:`FILTERED_PLANS`).
    min_selectivity: float = 0.0

    def with_ef(self, ef: int, **changes: Any) -> Plan:
        """This plan with a larger candidate list, named ``<name>_ef<ef>``."""
        return replace(
            self,
            name=f"{self.name}_ef{ef}",
            description=f"{self.description}, ef_search = {ef}",
            ef_search=ef,
            **changes,
        )


_HNSW = Plan(
    "hnsw",
    "HNSW forced (enable_sort=off), filter applied after the index scan",
    {"enable_sort": "off", "hnsw.iterative_scan": "off"},
    exact=False,
    uses_hnsw=True,
)
_HNSW_ITER = Plan(
    "hnsw_iter",
    "HNSW forced, hnsw.iterative_scan = relaxed_order",
    {"enable_sort": "off", "hnsw.iterative_scan": "relaxed_order"},
    exact=False,
    uses_hnsw=True,
)

PLANS: tuple[Plan, ...] = (
    Plan(
        "planner",
        "the planner's own choice (iterative scan off)",
        {"enable_sort": "on", "hnsw.iterative_scan": "off"},
        exact=False,
        uses_hnsw=None,
    ),
    _HNSW,
    _HNSW_ITER,
    Plan(
        "exact",
        "exact: filter (B-tree) into a MATERIALIZED CTE, then sort by distance",
        {"enable_sort": "on", "hnsw.iterative_scan": "off"},
        exact=True,
        uses_hnsw=False,
    ),
    # Larger candidate lists: what raw pgvector needs for the recall a library may promise
    # (engramdb's ef_search grows with the table: 100 up to 100,000 rows, 316 at 1M), so
    # that "the best raw plan at that recall" exists for the comparison.
    *(_HNSW.with_ef(ef) for ef in (100, 200, 300)),
    # Below 1% the iterative scan is already far slower than exact search at ef 40.
    *(_HNSW_ITER.with_ef(ef, min_selectivity=0.01) for ef in (200, 300)),
)
PLAN_BY_NAME = {p.name: p for p in PLANS}
#: Unfiltered searches: iterative scan and the planner add nothing over plain HNSW there.
UNFILTERED_PLANS = ("hnsw", "hnsw_ef100", "hnsw_ef200", "hnsw_ef300", "exact")
#: Filtered searches (a plan runs for a bucket if the bucket's target selectivity is at least
#: its ``min_selectivity``).
FILTERED_PLANS = ("planner", "hnsw", "hnsw_iter", "hnsw_iter_ef200", "hnsw_iter_ef300", "exact")


def plans_for(qs: QuerySet) -> list[Plan]:
    """The raw plans measured for a query set."""
    if qs.column is None:
        return [PLAN_BY_NAME[p] for p in UNFILTERED_PLANS]
    target = qs.target if qs.target is not None else qs.selectivity
    plans = (PLAN_BY_NAME[p] for p in FILTERED_PLANS)
    return [p for p in plans if target >= p.min_selectivity]


@dataclass(frozen=True)
class Table:
    """Where the raw SQL runs: the raw suite's plain table, or engramdb's (:func:`engramdb_table`)."""

    #: The vector as the HNSW index sees it, ``{alias}`` standing for ``m.`` or nothing.
    vector: str = "{alias}embedding"
    #: Conditions before the scope's (engramdb's HNSW indexes are partial, one per space).
    where: str = ""
    hnsw_index: str = HNSW_INDEX


RAW_TABLE = Table()


def engramdb_table(dim: int) -> Table:
    """engramdb's ``memories`` table, reached by raw SQL through its space's HNSW index: the
    expression and the predicate of that partial index, and its name."""
    return Table(
        vector=f"({{alias}}embedding::vector({dim}))",
        where=f"embedding_dim = {dim} AND ",
        hnsw_index=index_name(dim, "cosine", "vector"),
    )


def search_sql(column: str | None, *, exact: bool, table: Table = RAW_TABLE) -> str:
    """Top-k SQL; parameters are (query vector, organization, [filter value], k).

    ``column`` comes from the workload's fixed set of column names, never from user input.
    """
    where = table.where + "organization_id = %s" + (f" AND {column} = %s" if column else "")
    vector = table.vector.format(alias="")
    if exact:
        # A CTE scan cannot feed an index-ordered scan, so this is a true exact top-k over
        # whatever rows the filter selects; only (id, distance) are materialized, not vectors.
        return (
            "WITH c AS MATERIALIZED ("
            f"SELECT id, {vector} <=> %b AS distance FROM memories WHERE {where}"
            ") SELECT id, distance FROM c ORDER BY distance LIMIT %s"
        )
    return (
        f"SELECT id, {vector} <=> %b AS distance FROM memories"
        f" WHERE {where} ORDER BY distance LIMIT %s"
    )


def rows_sql(column: str | None, *, exact: bool, table: Table = RAW_TABLE) -> str:
    """:func:`search_sql` returning :data:`ROW_COLUMNS` too (same parameters).

    The exact form keeps materializing only ``(id, distance)`` for the filter's rows and reads
    the other columns of the top k alone, as one would write it by hand.
    """
    cols = ", ".join(f"m.{c}" for c in ROW_COLUMNS)
    if exact:
        return (
            f"WITH top AS ({search_sql(column, exact=True, table=table)}) "
            f"SELECT {cols}, top.distance FROM top JOIN memories m USING (id) "
            "ORDER BY top.distance"
        )
    where = table.where + "organization_id = %s" + (f" AND {column} = %s" if column else "")
    return (
        f"SELECT {cols}, {table.vector.format(alias='m.')} <=> %b AS distance FROM memories m"
        f" WHERE {where} ORDER BY distance LIMIT %s"
    )


def accurate_plans(runs: Sequence[Measurement], scoped: bool) -> list[Measurement]:
    """The raw plans whose recall@k meets the issue's target (0.99 with a scope filter, 0.98
    without)."""
    target = RECALL_SCOPED if scoped else RECALL_ANY
    return [m for m in runs if m.metrics.get("recall", 0.0) >= target]


def best_plan(runs: Sequence[Measurement], scoped: bool) -> tuple[Measurement | None, str]:
    """The raw plan to compare with: the fastest (p50) that meets the recall target.

    When no raw plan meets it, the most accurate one (then the fastest): comparing with a plan
    that returns the wrong rows would reward being wrong.
    """
    target = RECALL_SCOPED if scoped else RECALL_ANY
    if not runs:
        return None, "no raw measurement for this bucket"
    good = accurate_plans(runs, scoped)
    if good:
        fastest = min(good, key=lambda m: m.metrics["p50_ms"])
        return fastest, f"fastest raw plan with recall >= {target}"
    best = max(runs, key=lambda m: (m.metrics.get("recall", 0.0), -m.metrics["p50_ms"]))
    return best, f"no raw plan reaches recall {target}: the most accurate one"


def search_params(qs: QuerySet, i: int, k: int) -> tuple[Any, ...]:
    if qs.column is None:
        return (qs.vectors[i], ORGANIZATION, k)
    return (qs.vectors[i], ORGANIZATION, qs.values[i], k)


def plan_shape(conn: psycopg.Connection[Any], query: str, params: Sequence[Any]) -> str:
    """The plan's node chain, e.g. ``Limit > Index Scan(memories_embedding_idx)``.

    Only the planner's choice (EXPLAIN without ANALYZE), for one query.
    """
    row = conn.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchone()
    assert row is not None

    def chain(node: dict[str, Any]) -> str:
        label = str(node["Node Type"])
        if "Index Name" in node:
            label += f"({node['Index Name']})"
        children = node.get("Plans", [])
        # A CTE's own plan hangs off its consumer as an InitPlan; show it in brackets.
        main = [c for c in children if c.get("Parent Relationship") != "InitPlan"]
        subs = [c for c in children if c.get("Parent Relationship") == "InitPlan"]
        out = label + "".join(f" [{c.get('Subplan Name', 'init')}: {chain(c)}]" for c in subs)
        return out + "".join(f" > {chain(c)}" for c in main)

    return chain(row[0][0]["Plan"])


def plan_shapes(conn: psycopg.Connection[Any], query: str, qs: QuerySet, k: int) -> dict[str, int]:
    """``{plan shape: number of distinct filter values planned that way}``.

    Custom plans depend on the filter value (its estimated selectivity), so one bucket can mix
    plans, e.g. B-tree + sort for a small agent and HNSW for a big one.
    """
    first_query: dict[str, int] = {}
    for i, value in enumerate(qs.values):
        first_query.setdefault(value, i)
    shapes: dict[str, int] = {}
    for i in first_query.values():
        shape = plan_shape(conn, query, search_params(qs, i, k))
        shapes[shape] = shapes.get(shape, 0) + 1
    return shapes


def apply_settings(conn: psycopg.Connection[Any], settings: dict[str, str]) -> None:
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))


def insert_params(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A workload row as INSERT parameters: dicts must be wrapped to be sent as jsonb.

    (Binary COPY needs no wrapping, the column types are given with ``set_types``.)
    """
    i = COLUMNS.index("metadata")
    return (*row[:i], Jsonb(row[i]), *row[i + 1 :])


def copy_rows(
    conn: psycopg.Connection[Any],
    rows: Sequence[tuple[Any, ...]],
    query: str = COPY_SQL,
    types: Sequence[str] = PG_TYPES,
) -> float:
    """Binary COPY of ``rows`` (of ``types``) in one transaction, into the raw table unless
    ``query`` names another; returns seconds including the commit."""
    with Timer() as t:
        with conn.cursor() as cur, cur.copy(query) as copy:
            copy.set_types(list(types))
            for row in rows:
                copy.write_row(row)
        conn.commit()
    return t.seconds


#: What raw SQL writes into engramdb's ``memories`` table (``raw.copy.engramdb_table``): the
#: workload's columns and what that table asks of a row for engramdb to find it: a content
#: hash (NOT NULL), no deduplication (as the suite's add_many is told, see
#: engramdb_bench.items), the dimension its HNSW index is partial on and the embedding model
#: its searches match. Every other column takes its default.
ENGRAMDB_COPY_COLUMNS = (*COLUMNS, "content_hash", "is_unique", "embedding_dim", "embedding_model")
ENGRAMDB_COPY_TYPES = (*PG_TYPES, "text", "boolean", "smallint", "text")
_ENGRAMDB_COPY_SQL = (
    f"COPY memories ({', '.join(ENGRAMDB_COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
)
_ENGRAMDB_INSERT_SQL = (
    f"INSERT INTO memories ({', '.join(ENGRAMDB_COPY_COLUMNS)}) VALUES ("
    + ", ".join("%b" if c == "embedding" else "%s" for c in ENGRAMDB_COPY_COLUMNS)
    + ")"
)
#: (table, column) of the scopes engramdb's memories refer to by foreign key.
_ENGRAMDB_SCOPES = (("agents", "agent_id"), ("users", "user_id"), ("rooms", "room_id"))


def engramdb_rows(rows: Sequence[tuple[Any, ...]], model: str) -> list[tuple[Any, ...]]:
    """Workload rows as :data:`ENGRAMDB_COPY_COLUMNS` tuples, their vectors from ``model``."""
    content, embedding = COLUMNS.index("content"), COLUMNS.index("embedding")
    return [
        (*r, hashlib.sha256(r[content].encode()).hexdigest(), False, len(r[embedding]), model)
        for r in rows
    ]


def register_engramdb_scopes(
    conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]
) -> None:
    """The agents, users and rooms ``rows`` name, registered in engramdb's tables (untimed, so
    that the rows' foreign keys hold when they are copied)."""
    for table, column in _ENGRAMDB_SCOPES:
        i = COLUMNS.index(column)
        conn.execute(
            f"INSERT INTO {table} (organization_id, id) SELECT %s, unnest(%s::text[])"
            " ON CONFLICT DO NOTHING",
            (ORGANIZATION, sorted({r[i] for r in rows if r[i] is not None})),
        )
    conn.commit()


def copy_into_engramdb(conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]) -> float:
    """Binary COPY of :func:`engramdb_rows` into engramdb's ``memories`` table (every index of
    it), in one transaction; returns seconds including the commit."""
    return copy_rows(conn, rows, _ENGRAMDB_COPY_SQL, ENGRAMDB_COPY_TYPES)


def insert_into_engramdb(
    conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]
) -> list[float]:
    """INSERT + durable COMMIT of each of :func:`engramdb_rows` into engramdb's ``memories``
    table; the seconds each took."""
    return _insert_one_by_one(conn, [insert_params(r) for r in rows], _ENGRAMDB_INSERT_SQL)


def relation_mb(conn: psycopg.Connection[Any], relation: str) -> float:
    row = conn.execute("SELECT pg_relation_size(%s::regclass)", (relation,)).fetchone()
    return float(row[0]) / (1024 * 1024) if row else float("nan")


# --------------------------------------------------------------------------------------------


#: Key of :attr:`Context.shared` under which the raw suite leaves its database's URI: the
#: engramdb suite writes single rows into it, interleaved with its own (:func:`insert_rows`).
RAW_URI = "raw_uri"


@bench("raw", description="raw pgvector: COPY, INSERT, index builds, HNSW vs exact search")
def raw_pgvector(ctx: Context) -> None:
    """Raw pgvector baselines on a plain memories table."""
    w = ctx.workload
    # Kept for the run: the engramdb suite's single adds alternate with raw INSERTs into it.
    uri = ctx.database(keep=True)
    ctx.shared[RAW_URI] = uri
    with psycopg.connect(uri) as conn:
        register_vector(conn)
        load_and_index(ctx, conn, w)
    with psycopg.connect(uri, autocommit=True) as conn:
        register_vector(conn)
        searches(ctx, conn, w)
    with psycopg.connect(uri) as conn:
        register_vector(conn)
        ingest_into_indexed(ctx, conn, w)
    concurrent_inserts(ctx, uri, w)
    # Untimed: vacuumed now, the table leaves autovacuum nothing to do (its HNSW graph walked
    # on one of the two cores) while the next suite times its import.
    with Timer() as t, psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) memories")
    ctx.log(f"vacuumed the table after the writes (untimed, {t.seconds:.1f}s)")


def copy_and_index(
    uri: str, rows: Sequence[tuple[Any, ...]], dim: int, m: int | None = None
) -> float:
    """Raw pgvector's import of ``rows`` into the empty database at ``uri``: the table made
    (untimed), one binary COPY, then :func:`indexes` (the graph with ``m``) one by one, each
    committed, as
    :func:`load_and_index` times them; returns the seconds of the COPY and the builds."""
    with psycopg.connect(uri) as conn:
        register_vector(conn)
        conn.execute(CREATE_TABLE.format(dim=dim))
        conn.commit()
        seconds = copy_rows(conn, rows)
        for _, _, ddl in indexes(m):
            with Timer() as t:
                conn.execute(ddl)
                conn.commit()
            seconds += t.seconds
    return seconds


def load_and_index(ctx: Context, conn: psycopg.Connection[Any], w: Workload) -> None:
    conn.execute(CREATE_TABLE.format(dim=w.spec.dim))
    conn.commit()
    # Rows are built before timing: an application has its objects in hand when it ingests.
    rows = w.base.rows()
    ctx.log(f"COPY {len(rows)} rows into an empty table")
    copy_s = copy_rows(conn, rows)
    del rows
    ctx.throughput("raw.copy.empty", len(w.base), copy_s, table_mb=relation_mb(conn, TABLE))

    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(str(d.message_primary)))
    total_index_s = 0.0
    for suffix, index, ddl in indexes(ctx.config.hnsw_m):
        ctx.log(f"building index {suffix}")
        notices.clear()
        with Timer() as t:
            conn.execute(ddl)
            conn.commit()
        total_index_s += t.seconds
        for notice in notices:  # e.g. the HNSW graph no longer fitting maintenance_work_mem
            ctx.log(f"NOTICE during {suffix}: {notice}")
        m = ctx.duration(
            f"raw.index.{suffix}",
            t.seconds,
            extra={"rows": float(len(w.base)), "index_mb": relation_mb(conn, index)},
            ddl=ddl,
        )
        m.notes.extend(notices)
    ctx.throughput(
        "raw.copy.empty+indexes",
        len(w.base),
        copy_s + total_index_s,
        extra={"copy_seconds": copy_s, "index_seconds": total_index_s},
    )
    conn.commit()  # relation_mb() opened a transaction; VACUUM must run outside one
    conn.autocommit = True
    with Timer() as t:
        conn.execute("VACUUM (ANALYZE) memories")
    ctx.duration("raw.vacuum_analyze", t.seconds)
    # Load the heap and the indexes into shared buffers: searches are then measured in the
    # steady state of a warm server, not at the mercy of whatever the build left cached.
    try:
        for rel in (HNSW_INDEX, TABLE, "memories_org_agent_idx", "memories_org_user_idx"):
            conn.execute("SELECT pg_prewarm(%s)", (rel,))
    except psycopg.Error as exc:
        ctx.log(f"pg_prewarm unavailable ({exc}); relying on warm-up queries")
    conn.autocommit = False


def sql_search(
    cur: psycopg.Cursor[Any], query: str, w: Workload, qs: QuerySet, k: int
) -> Callable[[int], list[int]]:
    """``search(i)`` for :func:`run_queries`: run query ``i`` (prepared, binary), map the ids."""

    def search(i: int) -> list[int]:
        cur.execute(query, search_params(qs, i, k), prepare=True)
        return [w.row_of(r[0]) for r in cur.fetchall()]

    return search


def searches(ctx: Context, conn: psycopg.Connection[Any], w: Workload) -> None:
    cfg = ctx.config
    apply_settings(
        conn, {"plan_cache_mode": "force_custom_plan", "hnsw.ef_search": str(cfg.ef_search)}
    )
    for qs in w.query_sets:
        runs: list[Measurement] = []
        for plan in plans_for(qs):
            ef_search = plan.ef_search or cfg.ef_search
            query = search_sql(qs.column, exact=plan.exact)
            result, shapes = run_plan(ctx, conn, qs, plan, ef_search, query)
            m = ctx.latency(
                f"raw.search.{qs.name}.{plan.name}",
                result,
                query_set=qs.name,
                column=qs.column,
                selectivity=qs.selectivity,
                plan=plan.name,
                plan_description=plan.description,
                plan_shape=max(shapes, key=lambda sh: shapes[sh]),
                plan_shapes=shapes,
                ef_search=ef_search,
                k=cfg.k,
            )
            for note in unexpected_plans(plan, shapes, HNSW_INDEX):
                m.notes.append(note)
                ctx.log(f"WARNING: {note}")
            runs.append(m)
        best, why = best_plan(runs, scoped=qs.column is not None)
        if best is not None:
            search_rows(ctx, conn, qs, rows_candidates(runs, best, qs.column is not None), why)
    apply_settings(conn, {**PLAN_BY_NAME["planner"].settings, "hnsw.ef_search": str(cfg.ef_search)})


def unexpected_plans(plan: Plan, shapes: dict[str, int], hnsw_index: str) -> list[str]:
    """Notes for the plan shapes that do not walk the HNSW index when ``plan`` must (or do
    when it must not)."""
    if plan.uses_hnsw is None:
        return []
    return [
        f"unexpected plan for {plan.name}: {shape}"
        for shape in shapes
        if (hnsw_index in shape) != plan.uses_hnsw
    ]


def run_plan(
    ctx: Context,
    conn: psycopg.Connection[Any],
    qs: QuerySet,
    plan: Plan,
    ef_search: int,
    query: str,
) -> tuple[SearchResult, dict[str, int]]:
    """Run ``query`` for every query of ``qs`` under ``plan``'s settings; the latencies and
    recalls, and the plan shapes EXPLAIN shows for it."""
    cfg, w = ctx.config, ctx.workload
    apply_settings(conn, {**plan.settings, "hnsw.ef_search": str(ef_search)})
    shapes = plan_shapes(conn, query, qs, cfg.k)
    limit = cfg.exact_queries if (plan.exact and qs.column is None) else None
    with conn.cursor(binary=True) as cur:
        search = sql_search(cur, query, w, qs, cfg.k)
        return run_queries(search, w, qs, warmup=cfg.warmup, limit=limit), shapes


def rows_candidates(
    runs: Sequence[Measurement], best: Measurement, scoped: bool
) -> list[Measurement]:
    """The plans whose rows form may be the fastest: ``best`` first, then every other plan
    meeting the recall target, fastest (p50, ``(id, distance)`` only) first. None but ``best``
    when no plan meets the target (``best`` is then the most accurate one)."""
    good = accurate_plans(runs, scoped)
    if best not in good:
        return [best]
    others = [m for m in good if m is not best]
    return [best, *sorted(others, key=lambda m: m.metrics["p50_ms"])]


def search_rows(
    ctx: Context,
    conn: psycopg.Connection[Any],
    qs: QuerySet,
    candidates: Sequence[Measurement],
    why: str,
) -> None:
    """``raw.search.<bucket>.rows``: the fastest raw plan returning the rows' columns.

    The plan fastest at returning ``(id, distance)`` is not always fastest at returning the
    rows too (for a user with 100 of 10,000 memories, the exact form, fastest with ids, took
    0.38 ms with the rows where the planner's plan took 0.31 ms, in one run). So the rows form of
    ``candidates[0]`` (the best plan) is timed, then that of each other candidate whose
    ``(id, distance)`` p50 is below the fastest rows form so far (a rows form does all its ids
    form does, and more, so no other can win), and the fastest is kept."""
    rows_p50: dict[str, float] = {}  # the rows forms timed, by plan
    fastest: tuple[Measurement, Plan, SearchResult, dict[str, int]] | None = None
    for m in candidates:
        if fastest is not None and m.metrics["p50_ms"] >= fastest[2].latency.p50_ms:
            continue
        plan = PLAN_BY_NAME[m.params["plan"]]
        query = rows_sql(qs.column, exact=plan.exact)
        result, shapes = run_plan(ctx, conn, qs, plan, m.params["ef_search"], query)
        rows_p50[plan.name] = result.latency.p50_ms
        if fastest is None or result.latency.p50_ms < fastest[2].latency.p50_ms:
            fastest = (m, plan, result, shapes)
    if fastest is None:
        return
    source, plan, result, shapes = fastest
    ctx.latency(
        f"raw.search.{qs.name}.rows",
        result,
        query_set=qs.name,
        column=qs.column,
        selectivity=qs.selectivity,
        plan=f"{plan.name}+rows",
        plan_description=(
            f"{plan.description}, returning the rows: the fastest rows form of "
            f"{', '.join(rows_p50)} (best plan: {why})"
        ),
        plan_shape=max(shapes, key=lambda sh: shapes[sh]),
        plan_shapes=shapes,
        ef_search=source.params["ef_search"],
        same_as=source.name,
        rows_forms_p50_ms=rows_p50,
        k=ctx.config.k,
    )


def ingest_into_indexed(ctx: Context, conn: psycopg.Connection[Any], w: Workload) -> None:
    cfg = ctx.config
    start = 0
    n_before = len(w.base)

    # COPY into the table that already holds n rows and all its indexes.
    rows = w.extra.rows(start, start + cfg.copy_indexed_rows)
    start += len(rows)
    if rows:
        ctx.log(f"COPY {len(rows)} rows into the indexed table ({n_before} rows)")
        seconds = copy_rows(conn, rows)
        ctx.throughput("raw.copy.indexed", len(rows), seconds, table_rows_before=n_before)
        n_before += len(rows)

    # Many INSERTs in one transaction (psycopg pipelines executemany): batch ingest via SQL.
    rows = w.extra.rows(start, start + cfg.executemany_rows)
    start += len(rows)
    if rows:
        ctx.log(f"executemany {len(rows)} INSERTs in one transaction")
        params = [insert_params(r) for r in rows]
        with Timer() as t:
            with conn.cursor() as cur:
                cur.executemany(INSERT_SQL, params)
            conn.commit()
        ctx.throughput("raw.insert.executemany", len(rows), t.seconds, table_rows_before=n_before)
        n_before += len(rows)

    # One INSERT and one durable commit per row: the cost of remembering one thing at a time.
    rows = w.extra.rows(start, start + cfg.insert_rows)
    if rows:
        ctx.log(f"{len(rows)} x (INSERT + COMMIT)")
        samples: list[float] = []
        params = [insert_params(r) for r in rows]
        with conn.cursor() as cur, Timer() as total:
            for row in params:
                with Timer() as t:
                    cur.execute(INSERT_SQL, row, prepare=True)
                    conn.commit()
                samples.append(t.seconds)
        lat = LatencyStats.from_seconds(samples)
        ctx.throughput(
            "raw.insert.commit_per_row",
            len(rows),
            total.seconds,
            extra={"p50_ms": lat.p50_ms, "p95_ms": lat.p95_ms, "p99_ms": lat.p99_ms},
            table_rows_before=n_before,
            synchronous_commit="on",
        )


# --------------------------------------------------------------------------------------------
# Concurrent single-row writers (the engramdb suite writes the same rows into its own table)


def run_writers(workers: Sequence[Callable[[], list[float]]]) -> tuple[float, list[float]]:
    """Run each worker in its own thread, all released at once; ``(wall seconds, latencies)``.

    A worker writes its rows one at a time and returns the seconds each write took. Setup
    (connections, row building) happens before, outside the timed section. The first worker
    exception is re-raised after every thread has stopped.
    """
    barrier = threading.Barrier(len(workers) + 1)
    samples: list[list[float]] = [[] for _ in workers]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            samples[i] = workers[i]()
        except BaseException as exc:  # surfaced in the caller's thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(workers))]
    for t in threads:
        t.start()
    barrier.wait()
    with Timer() as total:
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return total.seconds, [s for per in samples for s in per]


def insert_rows(conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]) -> list[float]:
    """INSERT + durable COMMIT of each row into the raw table; the seconds each took. Called by
    the engramdb suite between blocks of its own single adds (rows new to the raw table)."""
    return _insert_one_by_one(conn, [insert_params(r) for r in rows])


def _insert_one_by_one(
    conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]], query: str = INSERT_SQL
) -> list[float]:
    """INSERT + COMMIT each row; the seconds each took."""
    out = []
    with conn.cursor() as cur:
        for row in rows:
            t0 = time.perf_counter()
            cur.execute(query, row, prepare=True)
            conn.commit()
            out.append(time.perf_counter() - t0)
    return out


def concurrent_writers(
    uri: str, rows: Sequence[tuple[Any, ...]], threads: int
) -> tuple[float, list[float]]:
    """``rows`` split evenly between ``threads`` threads, each on its own connection, each
    INSERT + durable COMMIT per row (:func:`run_writers`: wall seconds, latencies). Also called
    by the engramdb suite, taking turns with its own writers."""
    params = [insert_params(row) for row in rows]
    per = len(params) // threads
    conns = [psycopg.connect(uri) for _ in range(threads)]
    try:
        for conn in conns:
            register_vector(conn)
        return run_writers(
            [
                functools.partial(_insert_one_by_one, c, params[j * per : (j + 1) * per])
                for j, c in enumerate(conns)
            ]
        )
    finally:
        for conn in conns:
            conn.close()


def concurrent_inserts(ctx: Context, uri: str, w: Workload) -> None:
    """``raw.insert.concurrent.t<T>``: T threads, each INSERT + durable COMMIT per row."""
    for threads, start, stop in concurrent_slices(ctx.config):
        rows = w.extra.rows(start, stop)
        if len(rows) < threads:
            continue
        ctx.log(f"{len(rows)} x (INSERT + COMMIT) from {threads} thread(s)")
        seconds, samples = concurrent_writers(uri, rows, threads)
        lat = LatencyStats.from_seconds(samples)
        ctx.throughput(
            f"raw.insert.concurrent.t{threads}",
            len(samples),
            seconds,
            extra={"p50_ms": lat.p50_ms, "p95_ms": lat.p95_ms, "p99_ms": lat.p99_ms},
            threads=threads,
            synchronous_commit="on",
        )
