"""engramdb on PostgreSQL through its public API, each figure a ratio to raw pgvector.

Registered as suite ``engramdb`` (baseline suite: ``raw``, run first in the same process and on
the same server). Everything goes through ``engramdb.connect(url, embedder=..., settings=...)``
and ``db.memories``: vectors are given with each memory (``embedding=``; no model runs) and
searches pass the query vector (``mode="vector"``). The embedder is a :class:`HashEmbedder` of
the workload's dimension, only so that the stored ``embedding_model`` is the one searches use.

Measured, in this order, in a fresh database migrated by ``connect``:

1. ``engramdb.import``: the ``n`` base rows written to a JSON Lines file (untimed), then imported
   into the empty store by the library function behind ``engramdb import`` (timed until the
   store is searchable with all its indexes). Baseline: ``raw.copy.empty+indexes``. It starts
   once the server is quiet (no autovacuum left over from the raw suite's writes).
   ``engramdb.import.index_and_analyze``: the part of it after the last row was loaded (the
   HNSW build and ANALYZE), with the loading time in its details. Baseline: ``raw.index.hnsw``.
2. ``engramdb.search.<bucket>``: top-k latency and recall@k for every query set, with the
   library's own plan choice. Baseline: the best raw plan for that bucket (:func:`best_raw_plan`),
   which returns ``(id, distance)``; the notes also compare with ``raw.search.<bucket>.rows``,
   that plan returning the rows' columns too (a search returns memories, not ids).
   ``engramdb.hybrid.<bucket>``: vector + text for reference (no raw equivalent).
   ``engramdb.interleaved.search.<bucket>`` (after step 6's memory figures, before any write):
   the same searches taking turns with that best raw plan run as raw SQL on engramdb's own
   table (:func:`interleaved_searches`), returning ids (``raw.interleaved.search.<bucket>``)
   and the rows (``….rows``): a ratio of figures taken at the same moments on the same rows.
3. ``engramdb.add_many``: extra rows into the live, indexed store, taking turns with
   ``raw.copy.engramdb_table``, binary COPYs of other extra rows (as many a transaction) into
   engramdb's own table (:func:`add_many_in_turns`). Baseline: ``raw.copy.engramdb_table``; the
   report also compares with ``raw.copy.indexed``, the raw suite's COPY into its own table.
4. ``engramdb.add.single``: one ``add()`` per memory, vector given, each a durable commit.
   Baseline: ``raw.insert.engramdb_table``, as many other rows (new to it) inserted as the
   superuser into engramdb's own table, in blocks alternating with the adds (all timed per
   row, summed). The report also compares with ``raw.insert.interleaved``, the same rows as
   the adds (new to it) inserted into the raw suite's table in a third block of each turn, and
   with ``raw.insert.commit_per_row``, taken in the raw suite.
5. ``engramdb.add.concurrent.t<T>``: ``add()`` from T threads sharing one ``connect()``.
   Baseline: ``raw.insert.concurrent.interleaved.t<T>``, T raw threads on T connections
   inserting as many rows (new to the raw suite's table) in turns alternating with
   engramdb's (``CONCURRENT_TURNS`` each); ``raw.insert.concurrent.t<T>`` (taken in the raw
   suite) when the raw suite did not run.
6. ``engramdb.session``: client RSS and the server's memory (PSS of every PostgreSQL process).
   ``engramdb.first.search.<bucket>``: the searches of step 2 (up to :data:`SIDE_QUERIES` per
   bucket), each the first of its filter's value (no plan choice remembered), which counts the
   filter's rows in its statement. Baseline: ``engramdb.search.<bucket>``.
7. ``engramdb.halfvec.*``: if the installed engramdb has a half-precision setting, the same
   import and searches with it (up to :data:`HALFVEC_MAX_N` memories). Baseline: the float32
   figures of step 1 and 2.
8. ``engramdb.import.turns``: up to :data:`IMPORT_TURNS_MAX_N` memories, the import of step 1
   repeated :data:`IMPORT_TURNS` times, taking turns with raw COPY + index builds of the same
   rows (``raw.copy.empty+indexes.turns``, its baseline), each into a fresh database
   (:func:`imports_in_turns`).

Search measurements carry a note saying whether the issue's target (p50 ≤ 1.3x the best raw
plan; recall@k ≥ 0.99 with a scope filter, ≥ 0.98 without) is met in this run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import inspect
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from engramdb import Engram, Settings, connect
from engramdb.embeddings.hashing import HashEmbedder
from engramdb.store.postgres.search import scaled_ef_search

from .baseline import (
    PLAN_BY_NAME,
    RAW_URI,
    RECALL_ANY,
    RECALL_SCOPED,
    apply_settings,
    best_plan,
    concurrent_writers,
    copy_and_index,
    copy_into_engramdb,
    engramdb_rows,
    engramdb_table,
    insert_into_engramdb,
    insert_rows,
    plan_shapes,
    plans_for,
    register_engramdb_scopes,
    rows_sql,
    run_writers,
    search_params,
    search_sql,
    unexpected_plans,
)
from .measure import LatencyStats, Timer, queries_in_turns, run_queries
from .registry import (
    CONCURRENT_TURNS,
    Context,
    Measurement,
    bench,
    concurrent_slices,
    interleaved_slice,
    raw_concurrent_slices,
    raw_copy_turns_slice,
    raw_insert_turns_slice,
)
from .workload import COLUMNS, Memories, QuerySet, topic

#: Issue 6 targets, checked per run and written as notes on the measurements.
SEARCH_P50_RATIO = 1.3
#: Single adds (and raw INSERTs) per turn when the two alternate.
INTERLEAVE_BLOCK = 50
#: Searches per turn when engramdb's and the raw SQL's take turns.
SEARCH_BLOCK = 20
#: Rows per JSON Lines write batch (only bounds the memory the file writer uses).
JSONL_CHUNK = 2_000
#: Memories per ``add_many`` call into the live, indexed store. Each new row is inserted into
#: the HNSW graph one at a time (as with the raw COPY); a call of the maximum batch (10,000)
#: can take longer than the default 30 s statement timeout on a large index on this machine,
#: so the suite calls it the way an application streaming data in would: 1,000 at a time.
ADD_MANY_BATCH = 1_000
#: Queries per bucket for the hybrid (reference) and half-precision measurements.
SIDE_QUERIES = 200
#: The half-precision variant imports the whole workload again (a second HNSW build): up to
#: this size only, so that a 1M run stays within the hour on a 2-core machine.
HALFVEC_MAX_N = 200_000
#: Imports repeated taking turns with raw COPY + index builds, each into a fresh database, up
#: to this size (a turn is seconds at 10,000 memories, minutes at 100,000).
IMPORT_TURNS = 3
IMPORT_TURNS_MAX_N = 20_000


# --------------------------------------------------------------------------------------------
# Workload rows as engramdb items


def items(m: Memories, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
    """Rows ``start:stop`` as ``add()`` keyword arguments, vectors as the numpy rows they are.

    Same fields as the raw table's rows; engramdb assigns its own ids, so the workload row
    index travels in ``metadata["n"]`` (already part of every row) to score recall.
    """
    stop = len(m) if stop is None else min(stop, len(m))
    return [_item(m.row(i)) for i in range(start, stop)]


def _item(row: tuple[Any, ...]) -> dict[str, Any]:
    r = dict(zip(COLUMNS, row, strict=True))
    return {
        "content": r["content"],
        "agent_id": r["agent_id"],
        "user_id": r["user_id"],
        "room_id": r["room_id"],
        "kind": r["kind"],
        "tags": r["tags"],
        "metadata": r["metadata"],
        "importance": r["importance"],
        "created_at": r["created_at"],
        "embedding": r["embedding"],
        # The workload repeats a few texts within one scope (as real chats do); engramdb would
        # return the stored one instead of writing again. Every row must be stored to be
        # compared with the raw table, which has no such rule, and with the ground truth.
        "is_unique": False,
    }


def write_jsonl(m: Memories, path: Path) -> int:
    """The rows as JSON Lines (one memory object per line, the fields of ``add()``).

    Vector components are written with 9 significant digits, which round-trip float32 exactly.
    Returns the file size in bytes.
    """
    with path.open("w", encoding="utf-8") as f:
        for start in range(0, len(m), JSONL_CHUNK):
            lines = []
            for item in items(m, start, start + JSONL_CHUNK):
                vec = item.pop("embedding")
                item["created_at"] = item["created_at"].isoformat()
                head = json.dumps(item, separators=(",", ":"))[:-1]
                body = ",".join(map("{:.9g}".format, vec.tolist()))
                lines.append(f'{head},"embedding":[{body}]}}\n')
            f.writelines(lines)
    return path.stat().st_size


# --------------------------------------------------------------------------------------------
# Connecting, importing, memory


def settings_for(uri: str, **overrides: Any) -> Settings:
    """Library defaults, except: migrate the fresh database, and no embedding model to load
    (``overrides``: the run's ``RunConfig.library_settings`` and any other field)."""
    return Settings(database_url=uri, auto_migrate=True, embedder="hash", **overrides)


def open_db(uri: str, dim: int, **overrides: Any) -> Engram:
    return connect(uri, embedder=HashEmbedder(dim), settings=settings_for(uri, **overrides))


def hnsw_params(db: Engram) -> dict[str, Any]:
    """The index and search settings in force (the raw suite builds the same graph)."""
    names = ("vector_type", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_search",
             "hnsw_ef_search_growth", "hnsw_filtered_ef_search", "hnsw_filtered_ef_search_growth",
             "hnsw_ef_search_reference_rows", "exact_search_max_rows",
             "exact_search_max_share")  # fmt: skip
    return {n: getattr(db.settings, n) for n in names if hasattr(db.settings, n)}


def import_function() -> tuple[Callable[..., Any] | None, str]:
    """The library function behind ``engramdb import``, if this engramdb has one."""
    try:
        importer = importlib.import_module("engramdb.service.importer")
    except ImportError as exc:
        return None, f"no engramdb.service.importer ({exc})"
    fn = getattr(importer, "import_records", None)
    if not callable(fn):
        return None, "engramdb.service.importer has no import_records"
    return fn, "engramdb.service.importer.import_records (what `engramdb import` runs)"


def jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` per line, as ``engramdb import`` reads its file (with its own
    reader where this engramdb has one)."""
    try:
        reader = getattr(
            importlib.import_module("engramdb.service.importer"), "jsonl_records", None
        )
    except ImportError:
        reader = None
    with path.open("rb") as f:
        if callable(reader):
            yield from reader(f)
            return
        for number, raw in enumerate(f, start=1):
            if raw.strip():
                yield number, json.loads(raw)


def run_import(
    db: Engram, path: Path, max_batch: int = ADD_MANY_BATCH
) -> tuple[str, dict[str, float]]:
    """Import the JSON Lines file into ``db``; returns how (for the report) and, where the
    import reports its phases, the seconds spent loading rows and then building the index.

    With the function behind ``engramdb import`` (parsing included in the time, as the command
    does it); without one (older engramdb), parses the file and calls ``add_many`` per batch,
    which is what an application would do.
    """
    fn, how = import_function()
    if fn is not None:
        started = time.perf_counter()
        marks: dict[str, float] = {}

        def progress(stats: Any) -> None:
            marks.setdefault(str(stats.phase), time.perf_counter() - started)

        phased = "on_progress" in inspect.signature(fn).parameters
        stats = fn(
            db.memories, jsonl_records(path), **({"on_progress": progress} if phased else {})
        )
        phases: dict[str, float] = {}
        if "indexing" in marks and "done" in marks:
            phases = {
                "load_seconds": marks["indexing"],
                "index_seconds": marks["done"] - marks["indexing"],
            }
        return f"{how}; {stats}", phases
    batch: list[dict[str, Any]] = []
    for _, record in jsonl_records(path):
        batch.append(record)
        if len(batch) == max_batch:
            db.memories.add_many(batch)
            batch = []
    if batch:
        db.memories.add_many(batch)
    return f"add_many per {max_batch} lines ({how})", {}


def rss_mb() -> float:
    """This process's resident set size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def server_pss_mb(uri: str) -> float:
    """Proportional set size of every PostgreSQL process (shared buffers counted once).

    NaN where ``/proc/<pid>/smaps_rollup`` cannot be read (another user's processes).
    """
    with psycopg.connect(uri, autocommit=True) as conn:
        pids = [int(r[0]) for r in conn.execute("SELECT pid FROM pg_stat_activity").fetchall()]
        row = conn.execute("SHOW data_directory").fetchone()
    if row is not None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pids.append(int((Path(row[0]) / "postmaster.pid").read_text().split()[0]))
    total_kb = 0
    for pid in set(pids):
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue  # a parallel worker that has exited, or not ours to read
        total_kb += sum(int(ln.split()[1]) for ln in text.splitlines() if ln.startswith("Pss:"))
    return total_kb / 1024 if total_kb else float("nan")


def maintain(uri: str) -> dict[str, float]:
    """What the raw suite does after its build: VACUUM (ANALYZE) and prewarm the memories table
    and its indexes; returns sizes. The same server maintenance for both, not library code."""
    with psycopg.connect(uri, autocommit=True) as conn:
        with Timer() as t:
            conn.execute("VACUUM (ANALYZE) memories")
        rels = [
            str(r[0])
            for r in conn.execute(
                "SELECT indexrelid::regclass::text FROM pg_index "
                "WHERE indrelid = 'memories'::regclass"
            ).fetchall()
        ]
        with contextlib.suppress(psycopg.Error):
            for rel in ["memories", *rels]:
                conn.execute("SELECT pg_prewarm(%s)", (rel,))
        row = conn.execute(
            "SELECT pg_table_size('memories'), pg_indexes_size('memories'), "
            "(SELECT count(*) FROM memories)"
        ).fetchone()
        hnsw = conn.execute(
            "SELECT coalesce(sum(pg_relation_size(indexrelid)), 0) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
            "WHERE i.indrelid = 'memories'::regclass AND a.amname = 'hnsw'"
        ).fetchone()
    assert row is not None and hnsw is not None
    mb = 1024 * 1024
    return {  # float(): sum() of bigints is a numeric, which psycopg gives as a Decimal
        "vacuum_analyze_seconds": t.seconds,
        "rows": float(row[2]),
        "table_mb": float(row[0]) / mb,
        "indexes_mb": float(row[1]) / mb,
        "hnsw_mb": float(hnsw[0]) / mb,
    }


# --------------------------------------------------------------------------------------------
# Search


def best_raw_plan(ctx: Context, qs: QuerySet) -> tuple[Measurement | None, str]:
    """The raw plan to compare with (:func:`benchmarks.baseline.best_plan`)."""
    found = [ctx.find(f"raw.search.{qs.name}.{p.name}") for p in plans_for(qs)]
    return best_plan([m for m in found if m is not None], scoped=qs.column is not None)


def _scope(qs: QuerySet, i: int) -> dict[str, Any]:
    return {} if qs.column is None else {qs.column: qs.values[i]}


def vector_searcher(db: Engram, qs: QuerySet, k: int) -> Callable[[int], list[int]]:
    def search(i: int) -> list[int]:
        hits = db.memories.search(embedding=qs.vectors[i], mode="vector", top_k=k, **_scope(qs, i))
        return [int(h.memory.metadata["n"]) for h in hits]

    return search


def search_targets(
    m: Measurement, qs: QuerySet, base: Measurement | None, rows: Measurement | None = None
) -> list[str]:
    """Notes: is each target of the issue met by this measurement? The p50 ratio is given
    against the best raw plan as measured (``(id, distance)`` only) and against the same plan
    returning the rows (``raw.search.<bucket>.rows``), which is what a search returns."""
    notes = []
    target = RECALL_ANY if qs.column is None else RECALL_SCOPED
    recall = m.metrics.get("recall", float("nan"))
    notes.append(
        f"target recall@k >= {target}: {'met' if recall >= target else 'NOT met'} ({recall:.3f})"
    )
    for b, what in ((base, "best raw"), (rows, "best raw returning the rows")):
        if b is None:
            continue
        ratio = m.metrics["p50_ms"] / b.metrics["p50_ms"]
        verdict = "met" if ratio <= SEARCH_P50_RATIO else "NOT met"
        notes.append(
            f"target p50 <= {SEARCH_P50_RATIO}x {what} ({b.name}, "
            f"{b.metrics['p50_ms']:.2f} ms, recall {b.metrics.get('recall', 0):.3f}): "
            f"{verdict} ({ratio:.2f}x)"
        )
    return notes


def searches(ctx: Context, db: Engram, prefix: str = "engramdb", **extra: Any) -> None:
    cfg, w = ctx.config, ctx.workload
    for qs in w.query_sets:
        base, why = best_raw_plan(ctx, qs)
        rows = ctx.find(f"raw.search.{qs.name}.rows")
        result = run_queries(vector_searcher(db, qs, cfg.k), w, qs, warmup=cfg.warmup)
        m = ctx.latency(
            f"{prefix}.search.{qs.name}",
            result,
            baseline=None if base is None else base.name,
            query_set=qs.name,
            column=qs.column,
            selectivity=qs.selectivity,
            plan="engramdb",
            baseline_choice=why,
            rows_baseline=None if rows is None else rows.name,
            k=cfg.k,
            **extra,
        )
        m.notes.extend(search_targets(m, qs, base, rows))
        for note in m.notes:
            ctx.log(f"{m.name}: {note}")


def side_searches(ctx: Context, db: Engram, prefix: str, **params: Any) -> None:
    """``<prefix>.search.<bucket>``: up to :data:`SIDE_QUERIES` searches of every bucket on a
    variant of the store, compared with ``engramdb.search.<bucket>`` (and, in the notes, with
    the raw plans)."""
    cfg, w = ctx.config, ctx.workload
    for qs in w.query_sets:
        count = min(len(qs), SIDE_QUERIES)
        result = run_queries(vector_searcher(db, qs, cfg.k), w, qs, warmup=cfg.warmup, limit=count)
        m = ctx.latency(
            f"{prefix}.search.{qs.name}",
            result,
            baseline=f"engramdb.search.{qs.name}",
            query_set=qs.name,
            selectivity=qs.selectivity,
            **params,
        )
        base, _ = best_raw_plan(ctx, qs)
        m.notes.extend(search_targets(m, qs, base, ctx.find(f"raw.search.{qs.name}.rows")))


def rows_plan(ctx: Context, qs: QuerySet, best: Measurement) -> Measurement:
    """The raw plan whose rows form the raw suite found fastest (``raw.search.<bucket>.rows``
    names it); ``best`` when there is none (a run without the rows form)."""
    rows = ctx.find(f"raw.search.{qs.name}.rows")
    name = None if rows is None else rows.params.get("same_as")
    source = None if name is None else ctx.find(name)
    return best if source is None else source


def interleaved_searches(ctx: Context, db: Engram, uri: str) -> None:
    """``engramdb.interleaved.search.<bucket>``: the bucket's searches again, taking turns
    (:func:`~benchmarks.measure.queries_in_turns`) with the bucket's raw plans (picked in the
    raw suite) run as raw SQL on engramdb's own table, through its HNSW index or B-trees, as the
    superuser: ``raw.interleaved.search.<bucket>`` returning ``(id, distance)`` through the best
    plan, and ``….rows`` returning the rows through the plan fastest at that
    (:func:`rows_plan`; each on a connection of its own, with its plan's settings). The same
    rows, indexes and moments on both sides: the ratios measure the library, not the drift
    between suites or two tables' caches.

    Skipped without the raw suite (there is no best plan to repeat)."""
    cfg, w = ctx.config, ctx.workload
    table = engramdb_table(cfg.dim)
    with (
        psycopg.connect(uri, autocommit=True) as conn,
        psycopg.connect(uri, autocommit=True) as rows_conn,
    ):
        # engramdb gives its own ids; the workload row travels in metadata (see items()).
        row_of = {r[0]: int(r[1]) for r in conn.execute("SELECT id, metadata->>'n' FROM memories")}
        for c in (conn, rows_conn):
            register_vector(c)
            apply_settings(c, {"plan_cache_mode": "force_custom_plan"})
        for qs in w.query_sets:
            best, why = best_raw_plan(ctx, qs)
            if best is None:
                continue
            sources = {"ids": best, "rows": rows_plan(ctx, qs, best)}
            plans = {form: PLAN_BY_NAME[m.params["plan"]] for form, m in sources.items()}
            ids_sql = {
                f: search_sql(qs.column, exact=p.exact, table=table) for f, p in plans.items()
            }
            queries = {
                "ids": ids_sql["ids"],
                "rows": rows_sql(qs.column, exact=plans["rows"].exact, table=table),
            }
            conns = {"ids": conn, "rows": rows_conn}
            shapes: dict[str, dict[str, int]] = {}
            for form, c in conns.items():
                ef = sources[form].params["ef_search"]
                apply_settings(c, {**plans[form].settings, "hnsw.ef_search": str(ef)})
                # What EXPLAIN shows for the plan's (id, distance) form, as the raw suite
                # records it (the rows form returns the same top k with its rows); once
                # when both forms run the same plan.
                same = form == "rows" and sources["rows"] is sources["ids"]
                shapes[form] = shapes["ids"] if same else plan_shapes(c, ids_sql[form], qs, cfg.k)
            with conn.cursor(binary=True) as cur, rows_conn.cursor(binary=True) as rows_cur:

                def raw(cur: Any, query: str, qs: QuerySet = qs) -> Callable[[int], list[int]]:
                    def search(i: int) -> list[int]:
                        cur.execute(query, search_params(qs, i, cfg.k), prepare=True)
                        return [row_of[r[0]] for r in cur.fetchall()]

                    return search

                # An exact scan of a whole large table takes a second or more a query: as many
                # as the raw suite runs of it (a million-memory run once spent most of an hour
                # here, on a build where no HNSW plan reached the recall target).
                exact_all = qs.column is None and any(p.exact for p in plans.values())
                results = queries_in_turns(
                    {
                        "engramdb": vector_searcher(db, qs, cfg.k),
                        "ids": raw(cur, queries["ids"]),
                        "rows": raw(rows_cur, queries["rows"]),
                    },
                    w,
                    qs,
                    block=SEARCH_BLOCK,
                    warmup=cfg.warmup,
                    limit=cfg.exact_queries if exact_all else None,
                )
            common: dict[str, Any] = {
                "query_set": qs.name,
                "selectivity": qs.selectivity,
                "k": cfg.k,
            }
            raw_ms = {}
            for form, suffix in (("ids", ""), ("rows", ".rows")):
                plan = plans[form]
                m = ctx.latency(
                    f"raw.interleaved.search.{qs.name}{suffix}",
                    results[form],
                    plan=plan.name + ("+rows" if form == "rows" else ""),
                    plan_description=f"{plan.description}, on engramdb's table ({why})",
                    plan_shapes=shapes[form],
                    ef_search=sources[form].params["ef_search"],
                    same_as=sources[form].name,
                    column=qs.column,
                    **common,
                )
                m.notes.extend(unexpected_plans(plan, shapes[form], table.hnsw_index))
                raw_ms[form] = m
            m = ctx.latency(
                f"engramdb.interleaved.search.{qs.name}",
                results["engramdb"],
                baseline=raw_ms["ids"].name,
                rows_baseline=raw_ms["rows"].name,
                plan="engramdb",
                column=qs.column,
                **common,
            )
            m.notes.extend(search_targets(m, qs, raw_ms["ids"], raw_ms["rows"]))
            for note in [*m.notes, *raw_ms["ids"].notes, *raw_ms["rows"].notes]:
                ctx.log(f"{m.name}: {note}")


def first_searches(ctx: Context, uri: str) -> None:
    """Every search the first of its filter's value: the store remembers no plan choice
    (``search_plan_cache_seconds=0``), so each search counts its filter's rows in its statement,
    as the first search of a user or agent does in a service with many of them."""
    db = open_db(uri, ctx.config.dim, **ctx.config.library_settings, search_plan_cache_seconds=0)
    try:
        side_searches(ctx, db, "engramdb.first", plan="engramdb, no plan remembered")
    finally:
        db.close()


def hybrid_searches(ctx: Context, db: Engram) -> None:
    """Vector + words (rank fusion) for reference: the query text names the query's topic."""
    cfg, w = ctx.config, ctx.workload
    for qs in w.query_sets:
        if qs.name not in ("unfiltered", "agent") and qs.name != w.query_sets[-1].name:
            continue  # unfiltered, one agent, and the broadest user bucket are enough here
        count = min(len(qs), SIDE_QUERIES)
        texts = [topic(int(np.argmax(w.universe.centres @ qs.vectors[i]))) for i in range(count)]

        def search(i: int, qs: QuerySet = qs, texts: list[str] = texts) -> list[int]:
            hits = db.memories.search(
                texts[i], embedding=qs.vectors[i], mode="hybrid", top_k=cfg.k, **_scope(qs, i)
            )
            return [int(h.memory.metadata["n"]) for h in hits]

        result = run_queries(search, w, qs, warmup=cfg.warmup, limit=count)
        ctx.latency(
            f"engramdb.hybrid.{qs.name}",
            result.latency,
            query_set=qs.name,
            selectivity=qs.selectivity,
            plan="engramdb hybrid (vector + text, fused)",
            # Recall against the vector-only truth means little once words re-rank hits.
            vector_recall=result.recall,
        )


# --------------------------------------------------------------------------------------------
# Writes


def add_one_by_one(db: Engram, batch: Sequence[dict[str, Any]]) -> list[float]:
    out = []
    for item in batch:
        t0 = time.perf_counter()
        db.memories.add(**item)
        out.append(time.perf_counter() - t0)
    return out


def add_many_in_turns(ctx: Context, db: Engram, uri: str, n_before: int) -> int:
    """``engramdb.add_many``: the raw suite's COPY's rows into the live, indexed store,
    :data:`ADD_MANY_BATCH` per call, taking turns with ``raw.copy.engramdb_table``: binary COPYs
    of as many rows a transaction (:func:`~benchmarks.registry.raw_copy_turns_slice`, rows new
    to the table) into engramdb's own ``memories`` table, as the superuser, spread evenly
    between the calls. The same table, indexes and moments on both sides: the raw suite's
    ``raw.copy.indexed`` was taken minutes earlier into a table with 4 indexes, not engramdb's
    11, and at a million memories the two figures drifted apart by up to 1.6x between runs of
    the same code. Returns the table's row count after both."""
    cfg, w = ctx.config, ctx.workload
    batch = items(w.extra, 0, cfg.copy_indexed_rows)
    if not batch:
        return n_before
    size = min(len(batch), ADD_MANY_BATCH)
    calls = [batch[start : start + size] for start in range(0, len(batch), size)]
    raw_rows = engramdb_rows(w.extra.rows(*raw_copy_turns_slice(cfg)), db.embedder.model)
    raw_batches = [raw_rows[s : s + size] for s in range(0, len(raw_rows) - size + 1, size)]
    raw_batches = raw_batches[: len(calls)]
    # Raw batch j goes after call (j + 1) * calls / raw - 1: evenly spread, the last at the end.
    after = {(j + 1) * len(calls) // len(raw_batches) - 1: b for j, b in enumerate(raw_batches)}
    ctx.log(
        f"add_many of {len(batch)} memories into the indexed store ({n_before} rows), taking"
        f" turns with {len(raw_batches)} raw COPYs of {size} rows into the same table"
    )
    seconds, raw_seconds = 0.0, 0.0
    with psycopg.connect(uri) as conn:
        register_vector(conn)
        register_engramdb_scopes(conn, [r for b in raw_batches for r in b])
        for i, call in enumerate(calls):
            with Timer() as t:
                db.memories.add_many(call)
            seconds += t.seconds
            if i in after:
                raw_seconds += copy_into_engramdb(conn, after[i])
    n_raw = sum(len(b) for b in raw_batches)
    if n_raw:
        ctx.throughput(
            "raw.copy.engramdb_table",
            n_raw,
            raw_seconds,
            table_rows_before=n_before,
            batch=size,
            what="binary COPY into engramdb's memories table, taking turns with engramdb.add_many",
        )
    ctx.throughput(
        "engramdb.add_many",
        len(batch),
        seconds,
        baseline="raw.copy.engramdb_table" if n_raw else "raw.copy.indexed",
        table_rows_before=n_before,
        batch=size,
    )
    return n_before + len(batch) + n_raw


def writes(ctx: Context, db: Engram, uri: str, n_before: int) -> None:
    cfg, w = ctx.config, ctx.workload
    n_before = add_many_in_turns(ctx, db, uri, n_before)

    # One add() per memory, vector given, taking turns, a block of each, with raw INSERT +
    # COMMITs of as many rows new to engramdb's own table (the same indexes, the same moments)
    # and, when the raw suite's table is still there, of the same rows new to that table
    # (raw.insert.commit_per_row was taken minutes earlier; a commit's cost drifts that much).
    start, stop = interleaved_slice(cfg)
    batch = items(w.extra, start, stop)
    raw_uri = ctx.shared.get(RAW_URI)
    if batch:
        samples: list[float] = []
        raw_samples: list[float] = []
        same_samples: list[float] = []
        rows = w.extra.rows(start, stop)
        same_rows = engramdb_rows(w.extra.rows(*raw_insert_turns_slice(cfg)), db.embedder.model)
        ctx.log(
            f"{len(batch)} x add(), one memory per call, alternating with {len(same_rows)} raw"
            " INSERT + COMMITs into engramdb's table"
            + (f" and {len(rows)} into the raw suite's" if raw_uri is not None else "")
        )
        with contextlib.ExitStack() as stack:
            same = stack.enter_context(psycopg.connect(uri))
            register_vector(same)
            register_engramdb_scopes(same, same_rows)
            conn = None
            if raw_uri is not None:
                conn = stack.enter_context(psycopg.connect(raw_uri))
                register_vector(conn)
            for j in range(0, len(batch), INTERLEAVE_BLOCK):
                samples += add_one_by_one(db, batch[j : j + INTERLEAVE_BLOCK])
                same_samples += insert_into_engramdb(same, same_rows[j : j + INTERLEAVE_BLOCK])
                if conn is not None:
                    raw_samples += insert_rows(conn, rows[j : j + INTERLEAVE_BLOCK])
        for name, got, what in (
            ("raw.insert.engramdb_table", same_samples, "into engramdb's memories table"),
            ("raw.insert.interleaved", raw_samples, "into the raw suite's table"),
        ):
            if not got:
                continue
            lat = LatencyStats.from_seconds(got)
            ctx.throughput(
                name,
                len(got),
                sum(got),
                extra={"p50_ms": lat.p50_ms, "p95_ms": lat.p95_ms, "p99_ms": lat.p99_ms},
                block=INTERLEAVE_BLOCK,
                synchronous_commit="on",
                what=f"raw INSERT + COMMIT per row {what}, alternating with engramdb.add.single",
            )
        lat = LatencyStats.from_seconds(samples)
        ctx.throughput(
            "engramdb.add.single",
            len(batch),
            sum(samples),
            baseline="raw.insert.engramdb_table",
            extra={"p50_ms": lat.p50_ms, "p95_ms": lat.p95_ms, "p99_ms": lat.p99_ms},
            table_rows_before=n_before,
        )
        n_before += len(batch) + len(same_rows)

    # Concurrent writers sharing one connect() (its pool): does throughput scale? When the raw
    # suite's table is still there, as many raw writers (rows new to that table) take turns
    # with them, CONCURRENT_TURNS each: raw.insert.concurrent.t<T> was taken minutes earlier,
    # and the commits' speed drifts that much between suites (one report read engramdb's 2
    # writers at 1.36x against raw's 1.9x; taking turns, both sides scale about alike).
    one_thread: float | None = None
    raw_one_thread: float | None = None
    raw_slices = {t: (start, stop) for t, start, stop in raw_concurrent_slices(cfg)}
    for threads, start, stop in concurrent_slices(cfg):
        batch = items(w.extra, start, stop)
        if len(batch) < threads:
            continue
        raw_rows = w.extra.rows(*raw_slices[threads]) if raw_uri is not None else []
        turns = CONCURRENT_TURNS if raw_rows else 1
        ctx.log(
            f"{len(batch)} x add() from {threads} thread(s)"
            + (f", taking turns with {len(raw_rows)} raw INSERT + COMMITs" if raw_rows else "")
        )
        seconds, samples, raw_seconds, raw_samples = 0.0, [], 0.0, []
        for turn in range(turns):
            part = batch[turn * len(batch) // turns : (turn + 1) * len(batch) // turns]
            per = len(part) // threads
            took, got = run_writers(
                [
                    functools.partial(add_one_by_one, db, part[j * per : (j + 1) * per])
                    for j in range(threads)
                ]
            )
            seconds, samples = seconds + took, samples + got
            if raw_rows and raw_uri is not None:
                n_raw = len(raw_rows)
                rows = raw_rows[turn * n_raw // turns : (turn + 1) * n_raw // turns]
                took, got = concurrent_writers(raw_uri, rows, threads)
                raw_seconds, raw_samples = raw_seconds + took, raw_samples + got
        raw_name = f"raw.insert.concurrent.t{threads}"
        if raw_samples:
            raw_lat = LatencyStats.from_seconds(raw_samples)
            raw_rate = len(raw_samples) / raw_seconds
            raw_one_thread = raw_rate if threads == 1 else raw_one_thread
            raw_name = f"raw.insert.concurrent.interleaved.t{threads}"
            ctx.throughput(
                raw_name,
                len(raw_samples),
                raw_seconds,
                extra={
                    "p50_ms": raw_lat.p50_ms,
                    "p95_ms": raw_lat.p95_ms,
                    "p99_ms": raw_lat.p99_ms,
                    "speedup_vs_1_thread": (
                        raw_rate / raw_one_thread if raw_one_thread else float("nan")
                    ),
                },
                threads=threads,
                turns=turns,
                synchronous_commit="on",
                what=f"raw INSERT + COMMIT per row, taking turns with {threads} engramdb writers",
            )
        lat = LatencyStats.from_seconds(samples)
        rate = len(samples) / seconds
        one_thread = rate if threads == 1 else one_thread
        ctx.throughput(
            f"engramdb.add.concurrent.t{threads}",
            len(samples),
            seconds,
            baseline=raw_name,
            extra={
                "p50_ms": lat.p50_ms,
                "p95_ms": lat.p95_ms,
                "p99_ms": lat.p99_ms,
                "speedup_vs_1_thread": rate / one_thread if one_thread else float("nan"),
            },
            threads=threads,
            turns=turns,
            pool_max_size=db.settings.pool_max_size,
        )


# --------------------------------------------------------------------------------------------
# Half precision (optional setting)


def halfvec_setting() -> dict[str, Any] | None:
    """Settings overrides that store vectors as ``halfvec``, if this engramdb has such a field."""
    names = {f.name: f for f in dataclasses.fields(Settings)}
    for name in ("vector_type", "embedding_type", "embedding_storage", "vector_storage"):
        if name in names:
            return {name: "halfvec"}
    for name in ("halfvec", "use_halfvec", "half_precision"):
        if name in names:
            return {name: True}
    return None


def halfvec_variant(ctx: Context, jsonl: Path) -> None:
    overrides = halfvec_setting()
    if overrides is None:
        ctx.log("no half-precision setting in this engramdb: halfvec variant skipped")
        return
    cfg, w = ctx.config, ctx.workload
    if len(w.base) > HALFVEC_MAX_N:
        ctx.log(f"halfvec variant skipped above {HALFVEC_MAX_N:,} memories (a second index build)")
        return
    uri = ctx.database("halfvec")
    db = open_db(uri, cfg.dim, **cfg.library_settings, **overrides)
    try:
        ctx.log(f"halfvec variant ({overrides}): importing {len(w.base)} memories")
        with Timer() as t:
            how, phases = run_import(db, jsonl)
        ctx.throughput(
            "engramdb.halfvec.import",
            len(w.base),
            t.seconds,
            baseline="engramdb.import",
            extra=phases,
            method=how,
            **hnsw_params(db),
        )
    finally:
        db.close()
    sizes = maintain(uri)
    ctx.duration(
        "engramdb.halfvec.vacuum_analyze", sizes.pop("vacuum_analyze_seconds"), extra=sizes
    )
    db = open_db(uri, cfg.dim, **cfg.library_settings, **overrides)
    try:
        side_searches(ctx, db, "engramdb.halfvec", plan="engramdb halfvec", **overrides)
    finally:
        db.close()


def imports_in_turns(ctx: Context, jsonl: Path, turns: int = IMPORT_TURNS) -> None:
    """The import into an empty store and raw pgvector's COPY + index builds of the same rows
    (:func:`~.baseline.copy_and_index`), taking turns, each into a fresh database: rows/s over
    all turns, ``engramdb.import.turns`` against ``raw.copy.empty+indexes.turns``.

    ``engramdb.import`` is one import against the raw suite's one load, taken minutes apart;
    at 10,000 memories, where an import takes seconds, the machine's speed drifts that much
    between them (imports of the same code read 0.64x to 0.78x taking turns here). Each side
    starts on a quiet server, and the two alternate which goes first.
    """
    cfg, w = ctx.config, ctx.workload
    n = len(w.base)
    if n > IMPORT_TURNS_MAX_N:
        ctx.log(f"imports taking turns skipped above {IMPORT_TURNS_MAX_N:,} memories")
        return
    rows = w.base.rows()  # built before the clock, as the raw suite's COPY has them

    def raw_load(uri: str) -> float:
        ctx.quiesce()
        return copy_and_index(uri, rows, cfg.dim, cfg.hnsw_m)

    def engramdb_import(uri: str) -> float:
        # The schema migrated before the clock, as in step 1.
        db = open_db(uri, cfg.dim, **cfg.library_settings)
        try:
            ctx.quiesce()
            with Timer() as t:
                run_import(db, jsonl)
        finally:
            db.close()
        with psycopg.connect(uri) as conn:
            row = conn.execute("SELECT count(*) FROM memories").fetchone()
        if row is None or row[0] != n:
            raise RuntimeError(f"imported {row and row[0]} memories, expected {n}")
        return t.seconds

    loads = {"raw": raw_load, "engramdb": engramdb_import}
    seconds: dict[str, list[float]] = {side: [] for side in loads}
    for turn in range(turns):
        for side in ("raw", "engramdb") if turn % 2 == 0 else ("engramdb", "raw"):
            with ctx.scratch_database(f"turn{turn}_{side}") as uri:
                seconds[side].append(loads[side](uri))
        ctx.log(
            f"import turn {turn}: raw {seconds['raw'][-1]:.2f}s, "
            f"engramdb {seconds['engramdb'][-1]:.2f}s"
        )
    for side, name, baseline in (
        ("raw", "raw.copy.empty+indexes.turns", None),
        ("engramdb", "engramdb.import.turns", "raw.copy.empty+indexes.turns"),
    ):
        ctx.throughput(
            name,
            n * turns,
            sum(seconds[side]),
            baseline=baseline,
            extra={f"turn{i}_seconds": s for i, s in enumerate(seconds[side])},
            turns=turns,
        )


# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _tempdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="engramdb-bench-import-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@bench(
    "engramdb",
    baseline="raw",
    description="engramdb on PostgreSQL: import, search, add_many, add, as ratios to raw pgvector",
)
def engramdb_suite(ctx: Context) -> None:
    cfg, w = ctx.config, ctx.workload
    uri = ctx.database("lib")
    with _tempdir() as tmp:
        jsonl = tmp / "memories.jsonl"
        with Timer() as t:
            size = write_jsonl(w.base, jsonl)
        ctx.log(
            f"wrote {len(w.base)} memories as JSON Lines ({size / 2**20:.0f} MB, {t.seconds:.1f}s)"
        )

        # Import into the empty store (schema migrated by connect, before the clock starts).
        db = open_db(uri, cfg.dim, **cfg.library_settings)
        try:
            ctx.log(f"importing {len(w.base)} memories into an empty store")
            ctx.quiesce()
            with Timer() as t:
                how, phases = run_import(db, jsonl)
            ctx.log(f"import via {how}")
            ctx.throughput(
                "engramdb.import",
                len(w.base),
                t.seconds,
                baseline="raw.copy.empty+indexes",
                extra={"file_mb": size / 2**20, **phases},
                method=how,
                **hnsw_params(db),
            )
            if phases:
                # Where the import's time goes, next to the raw suite's build of the same graph.
                ctx.duration(
                    "engramdb.import.index_and_analyze",
                    phases["index_seconds"],
                    baseline="raw.index.hnsw",
                    extra={"load_seconds": phases["load_seconds"]},
                )
        finally:
            db.close()
        sizes = maintain(uri)
        if sizes["rows"] != len(w.base):
            raise RuntimeError(f"imported {sizes['rows']:.0f} memories, expected {len(w.base)}")
        ctx.duration(
            "engramdb.vacuum_analyze",
            sizes.pop("vacuum_analyze_seconds"),
            baseline="raw.vacuum_analyze",
            extra=sizes,
        )

        # Searches on a fresh connection, so its memory cost is measured on its own.
        rss_before = rss_mb()
        with Timer() as session:
            db = open_db(uri, cfg.dim, **cfg.library_settings)
            try:
                s = db.settings
                # The candidate list the store uses at this size (it grows with the table).
                ef = scaled_ef_search(
                    s.hnsw_ef_search,
                    len(w.base),
                    s.hnsw_ef_search_reference_rows,
                    s.hnsw_ef_search_growth,
                )
                searches(ctx, db, ef_search=ef)
                hybrid_searches(ctx, db)
                rss_after = rss_mb()
                server = server_pss_mb(uri)
                # Before the writes: the ground truth is the base rows'.
                interleaved_searches(ctx, db, uri)
                first_searches(ctx, uri)
                writes(ctx, db, uri, len(w.base))
            finally:
                db.close()
        ctx.duration(
            "engramdb.session",
            session.seconds,
            extra={
                "client_rss_mb": rss_after,
                "client_rss_growth_mb": rss_after - rss_before,
                "server_pss_mb": server,
            },
            what="connect, searches, writes; memory measured after the searches",
        )
        if not math.isnan(server):
            ctx.log(f"server PSS {server:.0f} MB; client RSS {rss_after:.0f} MB")
        halfvec_variant(ctx, jsonl)
        imports_in_turns(ctx, jsonl)
