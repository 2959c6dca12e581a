"""The benchmark harness's own correctness: what it feeds engramdb and how it picks baselines.

Timing is never asserted (figures live in docs/performance.md); these tests check that the
engramdb suite imports exactly the workload's rows, writes disjoint row slices, and compares
each search with the right raw plan.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from benchmarks import engramdb_bench
from benchmarks.baseline import (
    CREATE_TABLE,
    ROW_COLUMNS,
    copy_and_index,
    copy_rows,
    indexes,
    plans_for,
    rows_candidates,
    rows_sql,
    run_writers,
    search_params,
    search_rows,
    search_sql,
)
from benchmarks.engramdb_bench import (
    best_raw_plan,
    imports_in_turns,
    interleaved_searches,
    open_db,
    run_import,
    write_jsonl,
    writes,
)
from benchmarks.http_bench import BLOCK, _take_turns
from benchmarks.measure import queries_in_turns
from benchmarks.registry import (
    CONCURRENT_TURNS,
    Context,
    Measurement,
    RunConfig,
    concurrent_slices,
    interleaved_slice,
    raw_concurrent_slices,
    raw_copy_turns_slice,
    raw_insert_turns_slice,
    single_insert_slice,
)
from benchmarks.runner import config_from_args, parse_args
from benchmarks.server import PgServer, quiesce
from benchmarks.targets import (
    Report,
    concurrency_table,
    http_target,
    ingest_table,
    interleaved_table,
)
from benchmarks.workload import COLUMNS, KINDS, Workload, WorkloadSpec, generate
from pgvector.psycopg import register_vector

DIM = 64


@pytest.fixture(scope="module")
def workload() -> Workload:
    return generate(WorkloadSpec(n=300, dim=DIM, tenants=3, seed=7), extra=10, n_unfiltered=5)


def test_jsonl_import_stores_every_row_exactly(
    workload: Workload, pg_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "memories.jsonl"
    write_jsonl(workload.base, path)
    db = open_db(pg_url, DIM)
    try:
        _, phases = run_import(db, path, max_batch=128)
    finally:
        db.close()
    # Into an empty store the graph is built after the rows: the report splits the two.
    assert set(phases) == {"load_seconds", "index_seconds"}
    assert phases["load_seconds"] > 0 and phases["index_seconds"] > 0
    with psycopg.connect(pg_url) as conn:
        register_vector(conn)
        rows = conn.execute(
            "SELECT (metadata->>'n')::int, content, agent_id, user_id, room_id, kind, tags,"
            " metadata->>'source', importance, created_at, embedding FROM memories"
        ).fetchall()
    base = workload.base
    assert sorted(r[0] for r in rows) == list(range(len(base)))
    for n, content, agent, user, room, kind, tags, source, importance, created, emb in rows:
        row = base.row(n)
        assert (agent, user, room, kind, content, tags) == row[2:8]
        assert kind in KINDS
        assert source == row[8]["source"]
        assert importance == pytest.approx(row[9], abs=1e-6)
        assert created == row[10]
        # Nine significant digits in the file: the stored float32 vector is bit-identical.
        stored = emb.to_numpy() if hasattr(emb, "to_numpy") else np.asarray(emb)
        assert np.array_equal(stored.astype(np.float32), base.vectors[n])


def test_write_slices_are_disjoint_and_split_evenly() -> None:
    """Every single-row write measurement writes rows no other measurement wrote before it, in
    either database: an HNSW graph takes a vector it already holds faster than a new one."""
    for cfg in (RunConfig.for_size(10_000, quick=True), RunConfig.for_size(100_000)):
        bulk = range(cfg.copy_indexed_rows + cfg.executemany_rows)  # COPY, then executemany
        single = range(*single_insert_slice(cfg))
        interleaved = range(*interleaved_slice(cfg))
        assert len(single) == len(interleaved) == cfg.insert_rows
        seen: set[int] = {*bulk, *single, *interleaved}
        assert len(seen) == len(bulk) + 2 * cfg.insert_rows
        # The engramdb suite's writers, then the raw writers that take turns with them (the
        # raw suite wrote the first slices into its table), each split into as many turns.
        for threads, start, stop in [*concurrent_slices(cfg), *raw_concurrent_slices(cfg)]:
            rows = range(start, stop)
            assert len(rows) > 0 and len(rows) % (threads * CONCURRENT_TURNS) == 0
            assert seen.isdisjoint(rows)
            seen.update(rows)
        assert max(seen) + 1 == cfg.extra_rows
        # The raw COPYs taking turns with add_many write into engramdb's table rows that
        # neither its add_many, nor its single adds, nor its concurrent writers write there.
        ours = {*range(cfg.copy_indexed_rows), *interleaved}
        ours.update(i for _, start, stop in concurrent_slices(cfg) for i in range(start, stop))
        raw_copy = range(*raw_copy_turns_slice(cfg))
        assert len(raw_copy) >= min(cfg.copy_indexed_rows, 1_000)
        assert ours.isdisjoint(raw_copy)
        # So do the raw INSERTs taking turns with its single adds, as many as those.
        raw_insert = range(*raw_insert_turns_slice(cfg))
        assert len(raw_insert) == cfg.insert_rows and raw_insert.stop <= cfg.extra_rows
        assert ours.isdisjoint(raw_insert) and set(raw_copy).isdisjoint(raw_insert)


def test_writes_take_turns_with_raw_sql_into_engramdbs_own_table(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """add_many's and the single adds' rows, and the rows of the raw COPYs and INSERTs taking
    turns with them (rows new to the table), all land in engramdb's memories table, where the
    library reads the raw ones as memories like its own (found through the space's HNSW index);
    each figure counts its own rows and the library's are compared with the raw SQL's."""
    monkeypatch.setattr(engramdb_bench, "ADD_MANY_BATCH", 2)
    cfg = RunConfig(n=300, dim=DIM, copy_indexed_rows=6, executemany_rows=2, insert_rows=2)
    w = generate(WorkloadSpec(n=300, dim=DIM, tenants=3, seed=7), extra=cfg.extra_rows,
                 n_unfiltered=5)  # fmt: skip
    path = tmp_path / "memories.jsonl"
    write_jsonl(w.base, path)
    measurements: list[Measurement] = []
    ctx = Context(cfg, None, "engramdb", measurements, {"w": w}, 0.0)
    db = open_db(pg_url, DIM)
    try:
        run_import(db, path)
        writes(ctx, db, pg_url, len(w.base))
        copied = range(*raw_copy_turns_slice(cfg))  # two COPYs of two rows, after calls 1 and 3
        inserted = range(*raw_insert_turns_slice(cfg))
        for i in (copied[0], inserted[-1]):
            got = db.memories.get(w.extra.row(i)[0])
            assert got.content == w.extra.row(i)[COLUMNS.index("content")]
            hits = db.memories.search(embedding=w.extra.vectors[i], mode="vector", top_k=1)
            assert hits[0].memory.id == got.id
    finally:
        db.close()
    with psycopg.connect(pg_url) as conn:
        ns = sorted(r[0] for r in conn.execute("SELECT (metadata->>'n')::int FROM memories"))
    single = range(*interleaved_slice(cfg))
    expected = [*range(len(w.base)), *(len(w.base) + i for i in range(cfg.copy_indexed_rows))]
    expected += [len(w.base) + i for i in (*copied, *single, *inserted)]
    assert ns == sorted(expected)
    by_name = {m.name: m for m in measurements}
    copy, many = by_name["raw.copy.engramdb_table"], by_name["engramdb.add_many"]
    assert copy.metrics["rows"] == 4 and many.metrics["rows"] == 6
    assert many.baseline == copy.name and copy.params["batch"] == many.params["batch"] == 2
    insert, add = by_name["raw.insert.engramdb_table"], by_name["engramdb.add.single"]
    assert insert.metrics["rows"] == add.metrics["rows"] == cfg.insert_rows
    assert add.baseline == insert.name
    assert "raw.insert.interleaved" not in by_name  # no raw suite in this run


class _Server(PgServer):
    """The harness's server, as the test server: databases made and dropped there (with
    pgvector), each one's name kept in order."""

    def __init__(self, admin_url: str) -> None:
        super().__init__()
        self.admin_url = admin_url
        self.created: list[str] = []

    def uri(self, database: str = "postgres") -> str:
        return self.admin_url.replace("/postgres?", f"/{database}?", 1)

    def create_database(self, name: str) -> str:
        self.created.append(name)
        return super().create_database(name)


def test_hnsw_m_builds_the_raw_and_engramdb_graphs_alike(pg_server: Any) -> None:
    """``--hnsw-m`` reaches both sides: raw pgvector's index build and the store engramdb
    opens build their graphs with it; out of pgvector's range it stops the run at once."""
    cfg = config_from_args(parse_args(["--quick", "--dim", str(DIM), "--hnsw-m", "6"]))
    assert cfg.hnsw_m == 6
    assert config_from_args(parse_args(["--quick"])).hnsw_m is None
    with pytest.raises(SystemExit, match="between 2 and 100"):
        config_from_args(parse_args(["--quick", "--hnsw-m", "1"]))

    w = generate(WorkloadSpec(n=60, dim=DIM, tenants=2, seed=5), extra=0, n_unfiltered=2)
    server = _Server(pg_server.admin_url())
    raw_uri, lib_uri = server.create_database("bench_m_raw"), server.create_database("bench_m_lib")
    try:
        copy_and_index(raw_uri, w.base.rows(), DIM, cfg.hnsw_m)
        db = open_db(lib_uri, DIM, **cfg.library_settings)
        try:
            db.memories.add("one memory", embedding=w.base.vectors[0])
        finally:
            db.close()
        for uri in (raw_uri, lib_uri):
            with psycopg.connect(uri) as conn:
                options = conn.execute(
                    "SELECT c.reloptions FROM pg_class c JOIN pg_am a ON a.oid = c.relam"
                    " WHERE a.amname = 'hnsw'"
                ).fetchall()
            assert options and all("m=6" in (row[0] or []) for row in options), (uri, options)
    finally:
        for name in ("bench_m_raw", "bench_m_lib"):
            server.drop_database(name)


def test_imports_take_turns_with_raw_copy_and_index_builds_in_fresh_databases(
    pg_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each turn imports the whole file into a fresh database (the suite checks every row is
    there) and loads the same rows through raw COPY + index builds into another, the two
    alternating which goes first; each figure counts every turn's rows, and the databases are
    gone afterwards."""
    w = generate(WorkloadSpec(n=120, dim=DIM, tenants=3, seed=11), extra=0, n_unfiltered=5)
    path = tmp_path / "memories.jsonl"
    write_jsonl(w.base, path)
    server = _Server(pg_server.admin_url())
    measurements: list[Measurement] = []
    ctx = Context(RunConfig(n=120, dim=DIM), server, "engramdb", measurements, {"w": w}, 0.0)
    imports_in_turns(ctx, path, turns=2)
    assert server.created == [
        "bench_engramdb_turn0_raw",
        "bench_engramdb_turn0_engramdb",
        "bench_engramdb_turn1_engramdb",
        "bench_engramdb_turn1_raw",
    ]
    by_name = {m.name: m for m in measurements}
    raw, lib = by_name["raw.copy.empty+indexes.turns"], by_name["engramdb.import.turns"]
    assert lib.baseline == raw.name and raw.baseline is None
    for m in (raw, lib):
        assert m.metrics["rows"] == 240
        turns = [m.metrics["turn0_seconds"], m.metrics["turn1_seconds"]]
        assert all(t > 0 for t in turns) and m.metrics["seconds"] == pytest.approx(sum(turns))
    with psycopg.connect(server.uri(), autocommit=True) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_engramdb\\_turn%'"
        ).fetchall()
    assert left == []

    # Above the size limit nothing is repeated.
    monkeypatch.setattr(engramdb_bench, "IMPORT_TURNS_MAX_N", 100)
    measurements.clear()
    server.created.clear()
    imports_in_turns(ctx, path, turns=2)
    assert measurements == [] and server.created == []


def test_run_writers_collects_every_sample_and_reraises() -> None:
    started: list[float] = []
    lock = threading.Lock()

    def worker(count: int) -> list[float]:
        with lock:
            started.append(time.perf_counter())
        return [0.001] * count

    seconds, samples = run_writers([lambda: worker(3), lambda: worker(5)])
    assert len(samples) == 8 and seconds >= 0 and len(started) == 2

    def broken() -> list[float]:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        run_writers([lambda: worker(1), broken])


def test_quiesce_returns_on_a_quiet_server_and_a_failed_check_is_only_logged(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The check runs, and returns before its timeout: the test databases are tiny.
    assert quiesce(pg_url, timeout=5.0) < 5.0

    class Unreachable:
        def quiesce(self) -> float:
            raise psycopg.OperationalError("connection refused")

    server: Any = Unreachable()
    Context(RunConfig(n=10), server, "engramdb", [], {}, 0.0).quiesce()
    assert "could not check for autovacuum workers: connection refused" in capsys.readouterr().err


def _ctx(measurements: list[Measurement]) -> Context:
    server: Any = None  # best_raw_plan only reads recorded measurements
    return Context(RunConfig(n=10), server, "engramdb", measurements, {}, 0.0)


def _search(name: str, p50: float, recall: float) -> Measurement:
    return Measurement(name, "latency", {"p50_ms": p50, "recall": recall})


def test_taking_turns_runs_each_op_every_time_in_rotating_blocks() -> None:
    calls: list[tuple[str, int]] = []
    ops = {name: (lambda i, name=name: calls.append((name, i))) for name in ("raw", "lib", "http")}
    took = _take_turns(ops, 3 * BLOCK)
    for name in ops:
        assert [i for n, i in calls if n == name] == list(range(3 * BLOCK))
        seconds, samples = took[name]
        assert len(samples) == 3 * BLOCK and seconds == pytest.approx(sum(samples))
    # Blocks of BLOCK, the first op of each turn rotating.
    firsts = [calls[t * 3 * BLOCK][0] for t in range(3)]
    assert firsts == ["raw", "lib", "http"]
    assert all(calls[j][0] == "raw" for j in range(BLOCK))


def test_the_http_target_takes_the_faster_raw_baseline() -> None:
    def m(name: str, p50: float, baseline: str | None = None) -> dict[str, Any]:
        return {"name": name, "metrics": {"p50_ms": p50}, "baseline": baseline}

    suite = [m("engramdb.search.unfiltered", 1.5, "raw.search.unfiltered.hnsw"),
             m("raw.search.unfiltered.hnsw", 0.9)]  # fmt: skip
    http = [m("http.search.c1.latency", 2.8), m("http.inprocess.search.c1.latency", 1.4)]

    def verdict(*measurements: dict[str, Any]) -> str:
        return http_target(Report({"measurements": list(measurements)}))[0]

    assert "raw.search.unfiltered.hnsw) 0.90 ms + 1.90 ms" in verdict(*suite, *http)
    assert "**met**" in verdict(*suite, *http)
    # Raw SQL taking turns on the same store, faster: the stricter baseline decides.
    turns = m("http.raw.search.c1.latency", 0.7)
    assert "http.raw.search.c1.latency) 0.70 ms + 2.10 ms" in verdict(*suite, *http, turns)
    assert "**not met**" in verdict(*suite, *http, turns)
    # Slower: the raw suite's figure stays; without a raw suite, the turns are the baseline.
    assert "0.90 ms" in verdict(*suite, *http, m("http.raw.search.c1.latency", 1.1))
    assert "0.70 ms" in verdict(*http, turns)
    assert verdict(*http) == "- HTTP: no http suite figures in this report"


def test_the_paced_searches_are_shown_beside_the_http_target_not_as_its_baseline() -> None:
    def m(name: str, p50: float, **params: Any) -> dict[str, Any]:
        return {"name": name, "metrics": {"p50_ms": p50}, "params": params}

    measurements = [
        m("http.search.c1.latency", 3.0),
        m("http.raw.search.c1.latency", 0.6),
        m("http.raw.search.paced.c1.latency", 1.2, pause_ms=2.0),
        m("http.inprocess.search.paced.c1.latency", 2.1, pause_ms=2.0),
    ]
    lines = http_target(Report({"measurements": measurements}))
    # Judged against the raw SQL run back to back, whatever the paced figures say.
    assert "0.60 ms + 2.40 ms" in lines[0] and "**not met**" in lines[0]
    assert lines[-1] == (
        "  (raw SQL after idle pauses of 2 ms: p50 1.20 ms, HTTP = that + 1.80 ms;"
        " in process at that pace: p50 2.10 ms)"
    )


def test_taking_turns_pauses_before_the_paced_ops_without_timing_the_pause() -> None:
    ops = {"plain": lambda i: None, "paced": lambda i: None}
    started = time.perf_counter()
    took = _take_turns(ops, BLOCK, {"paced": 0.01})
    # BLOCK pauses of 10 ms were slept, and none of them is in the paced op's samples.
    assert time.perf_counter() - started >= BLOCK * 0.01
    for name in ops:
        seconds, samples = took[name]
        assert len(samples) == BLOCK and seconds < BLOCK * 0.01 / 2


def test_the_ingest_table_lists_the_imports_taking_turns_only_where_they_ran() -> None:
    def m(name: str, rate: float) -> dict[str, Any]:
        return {"name": name, "metrics": {"rows_per_s": rate}}

    once = [m("engramdb.import", 1400), m("raw.copy.empty+indexes", 2000)]
    turns = [m("engramdb.import.turns", 1500), m("raw.copy.empty+indexes.turns", 2000)]
    big = "\n".join(ingest_table(Report({"measurements": once})))
    assert "import.turns" not in big and "| 0.7x | ≥ 0.7x | **met** |" in big
    small = "\n".join(ingest_table(Report({"measurements": [*once, *turns]})))
    assert (
        "`engramdb.import.turns`) | 1,500 | `raw.copy.empty+indexes.turns` | 2,000 | 0.75x" in small
    )
    # One side missing is shown as missing, not dropped.
    half = "\n".join(ingest_table(Report({"measurements": [*once, turns[0]]})))
    assert (
        "`engramdb.import.turns`) | 1,500 | `raw.copy.empty+indexes.turns` | n/a | n/a | ≥ 0.7x | n/a |"
        in half
    )


def test_the_concurrency_table_compares_with_the_raw_writers_that_took_turns() -> None:
    def m(name: str, rate: float) -> dict[str, Any]:
        return {"name": name, "metrics": {"rows_per_s": rate, "p50_ms": 1000 / rate}}

    ours = [m("engramdb.add.concurrent.t1", 150), m("engramdb.add.concurrent.t2", 300)]
    suite = [m("raw.insert.concurrent.t1", 300), m("raw.insert.concurrent.t2", 400)]
    turns = [m("raw.insert.concurrent.interleaved.t1", 200),
             m("raw.insert.concurrent.interleaved.t2", 400)]  # fmt: skip
    lines = concurrency_table(Report({"measurements": [*ours, *suite, *turns]}))
    one, two = lines[2].split(" | "), lines[3].split(" | ")
    assert (one[4], one[7], two[4], two[7]) == ("200", "0.75x", "400", "0.75x")
    assert (two[8], two[9]) == ("2x", "2x |")  # both sides' speedup with 2 writers
    assert "took turns" in lines[-1] and "1 thread(s) 300, 2 thread(s) 400" in lines[-1]
    # Without them (older reports, or no raw suite), the raw suite's own figures.
    lines = concurrency_table(Report({"measurements": [*ours, *suite]}))
    assert lines[2].split(" | ")[4] == "300" and "took turns" not in lines[-1]


def test_best_raw_plan_is_the_fastest_accurate_one(workload: Workload) -> None:
    qs = next(q for q in workload.query_sets if q.column == "agent_id")
    runs = [
        _search(f"raw.search.{qs.name}.hnsw", 0.1, 0.40),  # fastest, wrong rows
        _search(f"raw.search.{qs.name}.hnsw_iter", 3.0, 0.995),
        _search(f"raw.search.{qs.name}.exact", 2.0, 1.0),
        _search(f"raw.search.{qs.name}.planner", 2.5, 1.0),
    ]
    best, why = best_raw_plan(_ctx(runs), qs)
    assert best is not None and best.name.endswith(".exact") and "fastest" in why

    # No plan reaches the scoped target (0.99): compare with the most accurate one.
    runs = [
        _search(f"raw.search.{qs.name}.hnsw", 0.1, 0.40),
        _search(f"raw.search.{qs.name}.hnsw_iter", 3.0, 0.97),
    ]
    best, why = best_raw_plan(_ctx(runs), qs)
    assert best is not None and best.name.endswith(".hnsw_iter") and "most accurate" in why


def test_unfiltered_target_is_lower_and_only_unfiltered_plans_count(workload: Workload) -> None:
    qs = workload.query_set("unfiltered")
    runs = [
        _search("raw.search.unfiltered.hnsw", 0.3, 0.985),  # meets 0.98, not 0.99
        _search("raw.search.unfiltered.exact", 4.0, 1.0),
        _search("raw.search.unfiltered.planner", 0.01, 1.0),  # not an unfiltered plan
    ]
    best, _ = best_raw_plan(_ctx(runs), qs)
    assert best is not None and best.name == "raw.search.unfiltered.hnsw"
    assert best_raw_plan(_ctx([]), qs)[0] is None


def test_raw_plans_per_bucket(workload: Workload) -> None:
    unfiltered = [p.name for p in plans_for(workload.query_set("unfiltered"))]
    assert {"hnsw", "hnsw_ef100", "hnsw_ef200", "hnsw_ef300", "exact"} == set(unfiltered)
    for qs in workload.query_sets[1:]:
        names = {p.name for p in plans_for(qs)}
        assert {"planner", "hnsw", "hnsw_iter", "exact"} <= names
        # The costly iterative scans at ef_search 200/300 only where they could be the best plan.
        broad = qs.target is not None and qs.target >= 0.01
        assert ("hnsw_iter_ef200" in names) == broad
        assert ("hnsw_iter_ef300" in names) == broad


def _raw_table(conn: psycopg.Connection[Any], workload: Workload) -> None:
    """The raw suite's table of the workload's rows, indexed, in a schema of its own (the
    database already has engramdb's memories), first on ``conn``'s search path."""
    register_vector(conn)
    conn.execute("CREATE SCHEMA raw_baseline")
    conn.execute("SET search_path = raw_baseline, public")
    conn.execute(CREATE_TABLE.format(dim=DIM))
    conn.commit()
    copy_rows(conn, workload.base.rows())
    for _, _, ddl in indexes():
        conn.execute(ddl)
    conn.commit()


def _raw_run(bucket: str, plan: str, p50: float, recall: float = 1.0) -> Measurement:
    """A raw plan's measurement as the raw suite records it (figures given)."""
    return Measurement(f"raw.search.{bucket}.{plan}", "latency",
                       {"p50_ms": p50, "recall": recall}, {"plan": plan, "ef_search": 40})  # fmt: skip


def test_rows_candidates_are_the_best_plan_then_the_other_accurate_plans_fastest_first() -> None:
    planner, exact = _raw_run("u", "planner", 0.2), _raw_run("u", "exact", 0.3)
    iterative = _raw_run("u", "hnsw_iter_ef300", 0.25, recall=0.995)
    hnsw = _raw_run("u", "hnsw", 0.1, recall=0.4)
    runs = [exact, hnsw, iterative, planner]
    assert rows_candidates(runs, planner, scoped=True) == [planner, iterative, exact]
    # Unfiltered, 0.98 is enough: the same; with no plan accurate enough, the best alone.
    assert rows_candidates(runs, planner, scoped=False) == [planner, iterative, exact]
    assert rows_candidates([hnsw], hnsw, scoped=True) == [hnsw]


def test_rows_baseline_is_the_fastest_rows_form_of_the_plans_that_can_win(
    workload: Workload, pg_url: str
) -> None:
    """``raw.search.<bucket>.rows`` times the best plan's rows form, then that of each other
    candidate whose ``(id, distance)`` p50 is below the fastest rows form so far, and keeps the
    fastest: a candidate slower on ids alone than that is never timed."""
    qs = next(q for q in workload.query_sets if q.column == "user_id")
    measurements: list[Measurement] = []
    ctx = Context(RunConfig(n=len(workload.base), dim=DIM, warmup=2), None, "raw",
                  measurements, {"w": workload}, 0.0)  # fmt: skip
    best = _raw_run(qs.name, "exact", 1.0)
    # p50 0: faster on ids than any rows form, so timed; 1e9: slower than any, so not.
    candidates = [best, _raw_run(qs.name, "planner", 0.0), _raw_run(qs.name, "hnsw_iter", 1e9)]
    with psycopg.connect(pg_url) as conn:
        _raw_table(conn, workload)
        search_rows(ctx, conn, qs, candidates, "fastest raw plan with recall >= 0.99")
    (rows,) = measurements
    assert rows.name == f"raw.search.{qs.name}.rows"
    forms = rows.params["rows_forms_p50_ms"]
    assert set(forms) == {"exact", "planner"}
    fastest = min(forms, key=forms.__getitem__)
    assert rows.params["plan"] == f"{fastest}+rows"
    assert rows.params["same_as"] == f"raw.search.{qs.name}.{fastest}"
    assert rows.metrics["p50_ms"] == forms[fastest]
    assert rows.metrics["recall"] == 1.0  # both are exact on this table: the true top k


def test_rows_baseline_returns_the_same_top_k_with_the_rows(
    workload: Workload, pg_url: str
) -> None:
    """``raw.search.<bucket>.rows`` must time the same answer as the plan it repeats: the same
    ids in the same order, each with its stored columns."""
    k = 10
    with psycopg.connect(pg_url) as conn:
        _raw_table(conn, workload)
        conn.execute("SET hnsw.ef_search = 200")  # the tiny graph: HNSW finds everything
        checked = 0
        for qs in workload.query_sets:
            for exact in (True, False):
                for i in range(min(3, len(qs.vectors))):
                    params = search_params(qs, i, k)
                    ids = conn.execute(search_sql(qs.column, exact=exact), params).fetchall()
                    rows = conn.execute(rows_sql(qs.column, exact=exact), params).fetchall()
                    assert [r[0] for r in rows] == [r[0] for r in ids]
                    assert [r[-1] for r in rows] == pytest.approx([r[1] for r in ids])
                    for r in rows:
                        expected = workload.base.row(workload.row_of(r[0]))
                        assert tuple(r[:-1]) == expected[: len(ROW_COLUMNS)]
                        checked += 1
        assert checked > 0


def test_queries_in_turns_runs_every_query_once_per_searcher_in_rotating_blocks(
    workload: Workload,
) -> None:
    qs = next(q for q in workload.query_sets if q.column == "user_id")
    calls: list[tuple[str, int]] = []
    truth = [[int(x) for x in qs.truth_idx[i]] for i in range(len(qs))]

    def searcher(name: str, right: bool) -> Any:
        def search(i: int) -> list[int]:
            calls.append((name, i))
            return truth[i] if right else []

        return search

    results = queries_in_turns(
        {"a": searcher("a", True), "b": searcher("b", False)}, workload, qs, block=2, warmup=1
    )
    timed = calls[2:]  # one warm-up query each first
    assert calls[:2] == [("a", 0), ("b", 0)]
    for name in ("a", "b"):
        assert [i for n, i in timed if n == name] == list(range(len(qs)))
        assert results[name].latency.count == len(qs)
    # Blocks of two queries, the first searcher of each turn alternating.
    assert [n for n, _ in timed[:8]] == ["a", "a", "b", "b", "b", "b", "a", "a"]
    assert [i for _, i in timed[:8]] == [0, 1, 0, 1, 2, 3, 2, 3]
    assert results["a"].recall == 1.0 and results["b"].recall == 0.0
    # With a limit, the first that many queries only, still in turns.
    calls.clear()
    limited = queries_in_turns(
        {"a": searcher("a", True), "b": searcher("b", False)}, workload, qs, block=2, warmup=0,
        limit=3,
    )  # fmt: skip
    assert calls == [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("b", 2), ("a", 2)]
    assert limited["a"].latency.count == limited["b"].latency.count == 3


def test_interleaved_searches_run_the_best_raw_plan_on_engramdbs_table(
    workload: Workload, pg_url: str, tmp_path: Path
) -> None:
    """The raw SQL taking turns with engramdb's searches runs on engramdb's own rows, through
    the plan the raw suite picked: exact plans find the true top k, HNSW plans walk the space's
    index, and the rows form returns the same rows as the ids form."""
    path = tmp_path / "memories.jsonl"
    write_jsonl(workload.base, path)
    db = open_db(pg_url, DIM)
    try:
        run_import(db, path)

        def best(bucket: str, plan: str, ef_search: int) -> Measurement:
            params = {"plan": plan, "ef_search": ef_search}
            return Measurement(f"raw.search.{bucket}.{plan}", "latency",
                               {"p50_ms": 1.0, "recall": 1.0}, params)  # fmt: skip

        raw = [best("unfiltered", "hnsw_ef200", 200)]
        raw += [best(q.name, "exact", 40) for q in workload.query_sets if q.column is not None]
        # Filtered buckets: the planner's plan, slower on ids, found fastest with the rows.
        for q in workload.query_sets:
            if q.column is not None:
                planner = _raw_run(q.name, "planner", 2.0)
                rows_of = Measurement(f"raw.search.{q.name}.rows", "latency",
                                      {"p50_ms": 1.5, "recall": 1.0},
                                      {"plan": "planner+rows", "same_as": planner.name})  # fmt: skip
                raw += [planner, rows_of]
        measurements = list(raw)
        ctx = Context(RunConfig(n=len(workload.base), dim=DIM, warmup=2), None, "engramdb",
                      measurements, {"w": workload}, 0.0)  # fmt: skip
        interleaved_searches(ctx, db, pg_url)
    finally:
        db.close()
    got = {m.name: m for m in measurements}
    for qs in workload.query_sets:
        ids = got[f"raw.interleaved.search.{qs.name}"]
        rows = got[f"raw.interleaved.search.{qs.name}.rows"]
        ours = got[f"engramdb.interleaved.search.{qs.name}"]
        assert ours.baseline == ids.name and ours.params["rows_baseline"] == rows.name
        assert ids.params["same_as"] == f"raw.search.{qs.name}.{ids.params['plan']}"
        # The rows form through the plan the raw suite found fastest at it; the best plan's
        # where it recorded none.
        rows_plan = "hnsw_ef200" if qs.column is None else "planner"
        assert ids.params["plan"] == ("hnsw_ef200" if qs.column is None else "exact")
        assert rows.params["plan"] == f"{rows_plan}+rows"
        assert rows.params["same_as"] == f"raw.search.{qs.name}.{rows_plan}"
        # On this tiny graph every plan finds the true top k, from engramdb's table.
        assert ids.metrics["recall"] == 1.0 and rows.metrics["recall"] == 1.0
        assert ours.metrics["recall"] == 1.0
        assert (
            ids.metrics["queries"] == rows.metrics["queries"] == ours.metrics["queries"] == len(qs)
        )
        assert not [n for n in ids.notes if "unexpected plan" in n]
        shapes = " ".join(ids.params["plan_shapes"])
        uses_index = f"memories_embedding_{DIM}_cosine_idx" in shapes
        assert uses_index == (qs.column is None), shapes
        assert any("best raw returning the rows" in n for n in ours.notes)


def test_the_interleaved_table_compares_with_the_raw_sql_that_took_turns() -> None:
    def m(name: str, p50: float, **params: Any) -> dict[str, Any]:
        baseline = params.pop("baseline", None)
        metrics = {"p50_ms": p50, "p95_ms": p50, "p99_ms": p50, "recall": 1.0, "recall_min": 1.0}
        return {"name": name, "metrics": metrics, "params": params, "baseline": baseline}

    report = Report({"measurements": [
        m("engramdb.interleaved.search.user@0.1%", 1.2, column="user_id",
          baseline="raw.interleaved.search.user@0.1%",
          rows_baseline="raw.interleaved.search.user@0.1%.rows"),
        m("raw.interleaved.search.user@0.1%", 1.0, plan="exact"),
        m("raw.interleaved.search.user@0.1%.rows", 0.8, plan="exact+rows"),
    ]})  # fmt: skip
    lines = interleaved_table(report)
    row = next(line for line in lines if line.startswith("| user@0.1%")).split(" | ")
    assert row[4:7] == ["exact", "1.00", "1.000"]  # the plan's name, not the bucket's tail
    assert row[7:12] == ["1.2x", "**met**", "0.80", "1.5x", "**not met**"]
    # A rows form through another plan than the best is named beside its figure.
    report.data["measurements"][2]["params"]["plan"] = "planner+rows"
    row = next(line for line in interleaved_table(Report(report.data)) if "user@0.1%" in line)
    assert row.split(" | ")[9] == "0.80 (planner)"
    assert interleaved_table(Report({"measurements": []})) == []
