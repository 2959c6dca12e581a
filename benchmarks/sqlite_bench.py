"""The SQLite backend through engramdb's API, against PostgreSQL in the same run, and sqlite-vec.

Registered as suite ``sqlite``; run ``python -m benchmarks --only sqlite`` (add ``--quick`` for
10k memories). The same code measures engramdb on the run's PostgreSQL (``sqlite.postgres.*``,
the baseline of each SQLite figure) and on a SQLite file (``sqlite.*``): ``add_many``, ``add``,
vector search per filter selectivity (with recall against the workload's exact ground truth),
text and hybrid search. Vectors are given with each memory (no model runs); every memory is
stored, with dedup off, and carries its workload row in ``metadata.n``.

Then ``sqlite.vec0.*`` measures the alternative the SQLite backend did not take: sqlite-vec's
``vec0`` table (brute force; loadable through ``apsw`` or ``pysqlite3``, not this Python's
``sqlite3``) on the same vectors and queries, each figure against engramdb's NumPy search
(``sqlite.vector.*``). It needs ``pip install apsw sqlite-vec pysqlite3-binary`` and is skipped,
with that hint in the log, without them.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engramdb import Engram, Settings, connect
from engramdb.embeddings.hashing import HashEmbedder

from .measure import LatencyStats, Timer, run_queries
from .registry import Context, bench
from .workload import KINDS, Memories, QuerySet, agent_name, room_name, topic, user_name

BATCH = 5_000
#: vec0 scans are slow: this many queries per query set is enough for stable percentiles.
VEC0_QUERIES = 50


def _item(m: Memories, i: int) -> dict[str, Any]:
    room = int(m.room[i])
    return {
        "content": m.content[i],
        "agent_id": agent_name(int(m.agent[i])),
        "user_id": user_name(int(m.user[i])),
        "room_id": room_name(room) if room >= 0 else None,
        "kind": KINDS[int(m.kind[i])],
        "tags": m.tags[i],
        "metadata": {"n": m.offset + i},
        "importance": float(m.importance[i]),
        "embedding": m.vectors[i],
        "is_unique": False,
    }


def _open(url: str, dim: int, overrides: dict[str, Any]) -> Engram:
    # auto_migrate: external PostgreSQL databases are otherwise left for `engramdb db upgrade`;
    # overrides: the run's RunConfig.library_settings (its graph, where the store is PostgreSQL).
    settings = Settings(auto_migrate=True, **overrides)
    return connect(url, embedder=HashEmbedder(dim), settings=settings)


@bench(
    "sqlite",
    description="SQLite backend vs PostgreSQL through engramdb's API; sqlite-vec vs NumPy search",
)
def sqlite_suite(ctx: Context) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="engramdb-bench-sqlite-"))
    try:
        ctx.log("engramdb on PostgreSQL (the baseline of every sqlite.* figure)")
        _backend(ctx, "sqlite.postgres", ctx.database("pg"), baseline=None)
        ctx.log("engramdb on SQLite")
        path = tmp / "memories.db"
        _backend(ctx, "sqlite", f"sqlite:///{path}", baseline="sqlite.postgres", file=path)
        _vec0(ctx, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _backend(
    ctx: Context, prefix: str, url: str, *, baseline: str | None, file: Path | None = None
) -> None:
    """Ingest, then search, through the API on one backend; names are ``<prefix>.<what>``."""
    cfg = ctx.config
    w = ctx.workload

    def base_of(name: str) -> str | None:
        return None if baseline is None else f"{baseline}.{name}"

    db = _open(url, cfg.dim, cfg.library_settings)
    base = w.base
    with Timer() as t:
        for start in range(0, len(base), BATCH):
            stop = min(start + BATCH, len(base))
            db.memories.add_many([_item(base, i) for i in range(start, stop)])
    ctx.throughput(
        f"{prefix}.add_many", len(base), t.seconds, baseline=base_of("add_many"), batch=BATCH
    )
    if file is not None:
        ctx.log(f"database file: {file.stat().st_size / 2**20:.0f} MB")
    db.close()

    # Searches see exactly the rows of the ground truth: the extra rows come after them.
    # A new connection: on SQLite the first vector search loads the vectors into the cache.
    db = _open(url, cfg.dim, cfg.library_settings)
    try:
        with Timer() as t:
            db.memories.search(embedding=w.query_sets[0].vectors[0], mode="vector", top_k=cfg.k)
        ctx.duration(
            f"{prefix}.vector.first_search",
            t.seconds,
            baseline=base_of("vector.first_search"),
            rows=len(base),
        )
        _vector_searches(ctx, db, prefix, base_of)
        _text_searches(ctx, db, prefix, base_of)

        extra = w.extra
        count = min(cfg.insert_rows, len(extra))
        with Timer() as t:
            for i in range(count):
                db.memories.add(**_item(extra, i))
        ctx.throughput(
            f"{prefix}.add.single",
            count,
            t.seconds,
            baseline=base_of("add.single"),
            table_rows_before=len(base),
        )
    finally:
        db.close()


def _vector_searches(
    ctx: Context, db: Engram, prefix: str, base_of: Callable[[str], str | None]
) -> None:
    cfg = ctx.config
    w = ctx.workload
    offset = w.base.offset
    for qs in w.query_sets:
        limit = cfg.queries if qs.column is None else cfg.filtered_queries

        def search(i: int, qs: QuerySet = qs) -> list[int]:
            scope = {} if qs.column is None else {qs.column: qs.values[i]}
            hits = db.memories.search(embedding=qs.vectors[i], mode="vector", top_k=cfg.k, **scope)
            # Rows added after the base (metadata.n past it) are not in the ground truth.
            return [int(h.memory.metadata["n"]) - offset for h in hits]

        result = run_queries(search, w, qs, warmup=cfg.warmup, limit=limit)
        name = f"vector.{qs.name}"
        ctx.latency(f"{prefix}.{name}", result, baseline=base_of(name), selectivity=qs.selectivity)


def _text_searches(
    ctx: Context, db: Engram, prefix: str, base_of: Callable[[str], str | None]
) -> None:
    cfg = ctx.config
    rng = np.random.default_rng(cfg.seed)
    clusters = rng.integers(0, ctx.workload.spec.n_clusters, size=min(cfg.queries, 300))
    for mode in ("text", "hybrid"):
        samples = []
        for c in clusters:
            t0 = time.perf_counter()
            db.memories.search(topic(int(c)), mode=mode, top_k=cfg.k)
            samples.append(time.perf_counter() - t0)
        name = f"{mode}.topic"
        ctx.latency(f"{prefix}.{name}", LatencyStats.from_seconds(samples), baseline=base_of(name))


# -- sqlite-vec ------------------------------------------------------------------------------


def _vec0(ctx: Context, tmp: Path) -> None:
    """sqlite-vec's vec0 on the workload's vectors: two layouts, two drivers, bare NumPy."""
    try:
        import apsw
        import sqlite_vec
    except ImportError as exc:
        ctx.log(f"sqlite-vec not measured ({exc}): pip install apsw sqlite-vec pysqlite3-binary")
        return
    cfg = ctx.config
    w = ctx.workload
    base = w.base
    ctx.log(
        f"sqlite-vec {_vec_version(apsw, sqlite_vec)} over apsw (SQLite {apsw.sqlite_lib_version()})"
    )
    agents = [agent_name(int(a)) for a in base.agent]
    users = [user_name(int(u)) for u in base.user]
    # Filters as metadata columns (any filter, checked while scanning), or the user as a
    # partition key (one scan per partition: fast per user, slow across them).
    layouts = {
        "metadata": "user_id text, agent_id text",
        "partition": "user_id text partition key, agent_id text",
    }
    for layout, columns in layouts.items():
        path = tmp / f"vec0-{layout}.db"
        conn = apsw.Connection(str(path))
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(
            f"CREATE VIRTUAL TABLE vec USING vec0(embedding float[{cfg.dim}] "
            f"distance_metric=cosine, {columns})"
        )
        rows = [(i + 1, base.vectors[i].tobytes(), users[i], agents[i]) for i in range(len(base))]
        with Timer() as t, conn:
            conn.executemany(
                "INSERT INTO vec (rowid, embedding, user_id, agent_id) VALUES (?, ?, ?, ?)", rows
            )
        ctx.throughput(f"sqlite.vec0.{layout}.insert", len(rows), t.seconds, layout=layout)
        del rows

        for qs in w.query_sets:
            search = _knn(conn.execute, cfg.k)
            _vec0_latency(ctx, qs, f"sqlite.vec0.{layout}.{qs.name}", search, layout)
        if layout == "metadata":
            _pysqlite3(ctx, path, sqlite_vec)
        conn.close()
    _bare_numpy(ctx)


def _knn(execute: Callable[..., Any], k: int) -> Callable[[QuerySet, int], list[int]]:
    """A vec0 top-k search through one driver's ``execute``; rowids are workload rows + 1."""

    def search(qs: QuerySet, i: int) -> list[int]:
        sql = "SELECT rowid FROM vec WHERE embedding MATCH ? AND k = ?"
        args: list[Any] = [qs.vectors[i].tobytes(), k]
        if qs.column is not None:
            sql += f" AND {qs.column} = ?"
            args.append(qs.values[i])
        return [int(r[0]) - 1 for r in execute(sql, args)]

    return search


def _vec_version(apsw: Any, sqlite_vec: Any) -> str:
    conn = apsw.Connection(":memory:")
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    version = str(next(iter(conn.execute("SELECT vec_version()")))[0])
    conn.close()
    return version


def _vec0_latency(
    ctx: Context,
    qs: QuerySet,
    name: str,
    search: Callable[[QuerySet, int], list[int]],
    layout: str,
    **params: Any,
) -> None:
    result = run_queries(lambda i: search(qs, i), ctx.workload, qs, warmup=3, limit=VEC0_QUERIES)
    ctx.latency(
        name,
        result,
        baseline=f"sqlite.vector.{qs.name}",
        selectivity=qs.selectivity,
        layout=layout,
        **params,
    )


def _pysqlite3(ctx: Context, path: Path, sqlite_vec: Any) -> None:
    """The same vec0 queries through pysqlite3 (the other driver that can load extensions)."""
    try:
        from pysqlite3 import dbapi2 as pysqlite3
    except ImportError as exc:
        ctx.log(f"pysqlite3 not measured ({exc}): pip install pysqlite3-binary")
        return
    conn = pysqlite3.connect(str(path))
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    qs = ctx.workload.query_set("unfiltered")
    _vec0_latency(
        ctx,
        qs,
        "sqlite.vec0.pysqlite3.unfiltered",
        _knn(conn.execute, ctx.config.k),
        "metadata",
        driver=f"pysqlite3 (SQLite {pysqlite3.sqlite_version})",
    )
    conn.close()


def _bare_numpy(ctx: Context) -> None:
    """The scan engramdb's vector search does, without engramdb: its floor."""
    w = ctx.workload
    vectors = np.ascontiguousarray(w.base.vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1).astype(np.float32)
    k = ctx.config.k
    qs = w.query_set("unfiltered")

    def search(i: int) -> Sequence[int]:
        q = qs.vectors[i]
        dist = 1 - (vectors @ q) / (norms * np.float32(np.linalg.norm(q)))
        top = np.argpartition(dist, k)[:k]
        return top[np.argsort(dist[top])].tolist()  # type: ignore[no-any-return]

    result = run_queries(search, w, qs, warmup=3, limit=ctx.config.queries)
    ctx.latency(
        "sqlite.numpy.unfiltered",
        result,
        baseline="sqlite.vector.unfiltered",
        selectivity=1.0,
    )
