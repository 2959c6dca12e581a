"""The SQLite backend through engramdb's API: ingest, exact vector search, full-text search.

Registered as suite ``sqlite``; run ``python -m benchmarks --only sqlite`` (add ``--quick`` for
10k memories). Vectors are given with each memory (no model runs); every memory is stored, with
dedup off, and carries its workload row in ``metadata.n`` so recall is scored against the
workload's ground truth.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from engramdb import Engram, Settings, connect
from engramdb.embeddings.hashing import HashEmbedder

from .measure import LatencyStats, Timer, run_queries
from .registry import Context, bench
from .workload import KINDS, Memories, agent_name, room_name, topic, user_name

BATCH = 5_000


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


def _open(path: Path, dim: int) -> Engram:
    return connect(f"sqlite:///{path}", embedder=HashEmbedder(dim), settings=Settings())


@bench("sqlite", description="SQLite backend: add_many, add, exact vector search, FTS5 search")
def sqlite_suite(ctx: Context) -> None:
    cfg = ctx.config
    w = ctx.workload
    tmp = Path(tempfile.mkdtemp(prefix="engramdb-bench-sqlite-"))
    try:
        db = _open(tmp / "memories.db", cfg.dim)
        base = w.base
        ctx.log(f"add_many of {len(base)} memories in batches of {BATCH}")
        with Timer() as t:
            for start in range(0, len(base), BATCH):
                stop = min(start + BATCH, len(base))
                db.memories.add_many([_item(base, i) for i in range(start, stop)])
        ctx.throughput("sqlite.add_many", len(base), t.seconds, batch=BATCH)
        size_mb = (tmp / "memories.db").stat().st_size / 2**20
        ctx.log(f"database file: {size_mb:.0f} MB")

        extra = w.extra
        count = min(cfg.insert_rows, len(extra))
        with Timer() as t:
            for i in range(count):
                db.memories.add(**_item(extra, i))
        ctx.throughput("sqlite.add.single", count, t.seconds, table_rows_before=len(base))
        db.close()

        # A new connection: the first vector search loads the vectors into the process cache.
        db = _open(tmp / "memories.db", cfg.dim)
        with Timer() as t:
            db.memories.search(embedding=w.query_sets[0].vectors[0], mode="vector", top_k=cfg.k)
        ctx.duration("sqlite.vector.cold_load", t.seconds, rows=len(base) + count)
        _vector_searches(ctx, db)
        _text_searches(ctx, db)
        db.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _vector_searches(ctx: Context, db: Engram) -> None:
    cfg = ctx.config
    w = ctx.workload
    offset = w.base.offset
    for qs in w.query_sets:
        limit = cfg.queries if qs.column is None else cfg.filtered_queries

        def search(i: int, qs: Any = qs) -> list[int]:
            scope = {} if qs.column is None else {qs.column: qs.values[i]}
            hits = db.memories.search(embedding=qs.vectors[i], mode="vector", top_k=cfg.k, **scope)
            # Rows added after the base (metadata.n past it) are not in the ground truth.
            return [int(h.memory.metadata["n"]) - offset for h in hits]

        result = run_queries(search, w, qs, warmup=cfg.warmup, limit=limit)
        ctx.latency(f"sqlite.vector.{qs.name}", result, selectivity=qs.selectivity)


def _text_searches(ctx: Context, db: Engram) -> None:
    cfg = ctx.config
    rng = np.random.default_rng(cfg.seed)
    clusters = rng.integers(0, ctx.workload.spec.n_clusters, size=min(cfg.queries, 300))
    for mode in ("text", "hybrid"):
        samples = []
        for c in clusters:
            t0 = time.perf_counter()
            db.memories.search(topic(int(c)), mode=mode, top_k=cfg.k)
            samples.append(time.perf_counter() - t0)
        ctx.latency(f"sqlite.{mode}.topic", LatencyStats.from_seconds(samples))
