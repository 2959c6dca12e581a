"""Filtered vector search finds what exact search finds, at every selectivity.

The store searches a filter exactly when it matches few rows and through HNSW with iterative
scans otherwise; the line is forced low here (EXACT_MAX_ROWS) so both paths run on a few
thousand rows. Ground truth is brute-force cosine in numpy.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg import sql

from engramdb import Engram, Settings, connect
from engramdb.embeddings.none import NoEmbedder
from engramdb.store.postgres import PostgresStore
from engramdb.store.postgres.plans import numbered
from engramdb.store.postgres.search import scaled_ef_search
from tests.conftest import TEST_DIMENSIONS
from tests.perf.conftest import EXACT_MAX_ROWS, open_loaded
from tests.perf.workload import Workload, queries

pytestmark = pytest.mark.slow


def _recall(db: Engram, w: Workload, user: str | None, count: int, seed: int) -> list[float]:
    rows = w.rows_of(user)
    out = []
    for q in queries(w, rows, count, seed):
        hits = db.memories.search(embedding=q.tolist(), mode="vector", top_k=10, user_id=user)
        found = [int(h.memory.metadata["n"]) for h in hits]
        assert all(w.users[r] == user for r in found) or user is None
        out.append(w.recall(q, rows, found))
    return out


def _plan(db: Engram) -> list[bool]:
    """The store's remembered decisions (True = exact) for the filters searched so far."""
    store = db.engine.store
    assert isinstance(store, PostgresStore)
    return [value for _, value in store._plans._data.values()]


def test_selective_filters_are_exact(loaded: Engram, workload: Workload) -> None:
    sizes = Counter(workload.users)
    # 0.025% to 0.1% of the rows: users with 1 to 4 memories among 4,000.
    small = sorted(u for u, c in sizes.items() if 1 <= c <= 4)[:12]
    recalls = [r for i, u in enumerate(small) for r in _recall(loaded, workload, u, 2, i)]
    assert len(recalls) == 24
    assert min(recalls) == 1.0
    assert _plan(loaded) == [True] * len(small)


def test_middle_band_is_exact_below_the_line(loaded: Engram, workload: Workload) -> None:
    sizes = Counter(workload.users)
    # About 1% of the rows (30 to 80 memories), still under the line: exact and complete.
    mid = sorted(u for u, c in sizes.items() if 30 <= c <= 80)[:4]
    assert mid
    recalls = [r for i, u in enumerate(mid) for r in _recall(loaded, workload, u, 5, 100 + i)]
    assert min(recalls) == 1.0
    assert all(_plan(loaded))


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_broad_filters_use_the_index_and_keep_recall(
    loaded: Engram, workload: Workload, rank: int
) -> None:
    # The three biggest users: about 30%, 13% and 7% of the rows, all above the line.
    user, size = Counter(workload.users).most_common(3)[rank]
    assert size > EXACT_MAX_ROWS
    recalls = _recall(loaded, workload, user, 30, 200 + rank)
    assert np.mean(recalls) >= 0.98, recalls
    assert _plan(loaded) == [False]


def test_unfiltered_search_keeps_recall(loaded: Engram, workload: Workload) -> None:
    recalls = _recall(loaded, workload, None, 30, 300)
    assert np.mean(recalls) >= 0.98, recalls
    assert _plan(loaded) == [False]


def test_exact_and_index_agree_when_forced(loaded: Engram, workload: Workload) -> None:
    user = Counter(workload.users).most_common(1)[0][0]
    q = queries(workload, workload.rows_of(user), 1, 400)[0].tolist()
    exact = loaded.memories.search(embedding=q, mode="vector", user_id=user, exact=True)
    approx = loaded.memories.search(embedding=q, mode="vector", user_id=user, exact=False)
    truth = workload.exact_top(np.asarray(q, dtype=np.float32), workload.rows_of(user))
    assert [int(h.memory.metadata["n"]) for h in exact] == truth
    assert len({h.memory.id for h in approx} & {h.memory.id for h in exact}) >= 9


def test_halfvec_index_keeps_recall(pg_url: str, workload: Workload) -> None:
    """vector_type="halfvec": the index stores half precision, rows and exact search keep
    float32; recall through the index stays high. The template's float32 index is dropped: a
    registered index that is gone is built again with the current settings."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP INDEX memories_embedding_64_cosine_idx")
    db = open_loaded(pg_url, workload, vector_type="halfvec")
    try:
        with psycopg.connect(pg_url) as conn:
            row = conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = "
                "'memories_embedding_64_cosine_halfvec_idx'"
            ).fetchone()
        assert row is not None and "halfvec(64)" in row[0] and "halfvec_cosine_ops" in row[0]
        recalls = _recall(db, workload, None, 30, 500)
        recalls += _recall(db, workload, Counter(workload.users).most_common(1)[0][0], 30, 501)
        assert np.mean(recalls) >= 0.97, recalls
        assert _plan(db) == [False, False]
        got = db.memories.get(db.memories.list(limit=1).items[0].id, with_embedding=True)
        n = int(got.metadata["n"])
        stored = np.asarray(got.embedding, dtype=np.float32)
        assert stored.tobytes() == workload.vectors[n].tobytes()  # rows keep full precision
    finally:
        db.close()


def test_selective_condition_inside_a_broad_scope_is_exact(
    loaded: Engram, workload: Workload
) -> None:
    """A big user's memories narrowed by metadata to a handful: the count that picks the path
    must include the metadata condition (not just the user's B-tree), or HNSW would be walked
    for 6 rows among 4,000 and miss most of them."""
    user = Counter(workload.users).most_common(1)[0][0]
    rows = workload.rows_of(user)[::200][:6]
    assert len(rows) == 6
    for seed in range(5):
        q = queries(workload, rows, 1, 600 + seed)[0]
        hits = loaded.memories.search(
            embedding=q.tolist(),
            mode="vector",
            user_id=user,
            filters={"metadata.n": {"$in": [int(r) for r in rows]}},
        )
        found = [int(h.memory.metadata["n"]) for h in hits]
        assert sorted(found) == sorted(int(r) for r in rows)
        assert workload.recall(q, rows, found) == 1.0
    assert _plan(loaded) == [True]


def test_a_filter_keeping_most_of_the_table_uses_the_index(pg_url: str, workload: Workload) -> None:
    """Under the row line, the share of the table decides: an unfiltered search of a small
    store walks the graph (exact would scan everything for nothing), one user's third of it is
    searched exactly, as is a user's single memory."""
    db = open_loaded(pg_url, workload, exact_search_max_rows=20_000)
    try:
        sizes = Counter(workload.users)
        big = sizes.most_common(1)[0][0]
        tiny = sorted(u for u, c in sizes.items() if c == 1)[0]
        assert np.mean(_recall(db, workload, None, 20, 700)) >= 0.98
        assert _plan(db) == [False]
        assert min(_recall(db, workload, big, 10, 701)) == 1.0
        assert min(_recall(db, workload, tiny, 2, 702)) == 1.0
        assert _plan(db) == [False, True, True]
    finally:
        db.close()


def test_candidate_list_grows_with_the_table() -> None:
    assert scaled_ef_search(100, 50_000, 100_000) == 100  # below the reference: as set
    assert scaled_ef_search(100, 100_000, 100_000) == 100
    assert scaled_ef_search(100, 400_000, 100_000) == 200  # square root by default
    assert scaled_ef_search(100, 1_000_000, 100_000) == 316
    assert scaled_ef_search(100, 1e9, 100_000) == 1000  # pgvector's ceiling
    assert scaled_ef_search(100, 1_000_000, None) == 100  # scaling off
    assert scaled_ef_search(100, 1_000_000, 0) == 100
    # The defaults: unfiltered 40 up to 100,000 rows, 120 at 300,000, 400 at a million;
    # broad filters 100 up to 100,000, 216 at 300,000, 501 at a million.
    s = Settings()
    sizes = (10_000, 100_000, 300_000, 1_000_000)
    reference = s.hnsw_ef_search_reference_rows
    grown = [
        scaled_ef_search(s.hnsw_ef_search, n, reference, s.hnsw_ef_search_growth) for n in sizes
    ]
    assert grown == [40, 40, 120, 400]
    filtered = [
        scaled_ef_search(s.hnsw_filtered_ef_search, n, reference, s.hnsw_filtered_ef_search_growth)
        for n in sizes
    ]
    assert filtered == [100, 100, 216, 501]


def test_searches_use_the_scaled_candidate_list(pg_url: str, workload: Workload) -> None:
    db = open_loaded(
        pg_url, workload, hnsw_ef_search=20, hnsw_filtered_ef_search=30,
        hnsw_ef_search_reference_rows=1000, hnsw_ef_search_growth=0.875,
        hnsw_filtered_ef_search_growth=0.5,
    )  # fmt: skip
    try:
        store = db.engine.store
        assert isinstance(store, PostgresStore)
        seen: list[str] = []
        original = store._round_trip

        def spy(org, query, params, local=None, **kw):  # type: ignore[no-untyped-def]
            if local and "hnsw.ef_search" in local:
                seen.append(local["hnsw.ef_search"])
            return original(org, query, params, local, **kw)

        store._round_trip = spy  # type: ignore[method-assign]
        rows = store._memories_rows()
        assert rows >= len(workload.users)  # 4,000 imported rows, from the statistics
        big_user = Counter(workload.users).most_common(1)[0][0]
        q = queries(workload, workload.rows_of(None), 1, 500)[0].tolist()
        db.memories.search(embedding=q, mode="vector")
        db.memories.search(embedding=q, mode="vector", user_id=big_user)
        db.memories.search(embedding=q, mode="vector", ef_search=17)
        assert seen == [
            str(scaled_ef_search(20, rows, 1000, 0.875)),
            str(scaled_ef_search(30, rows, 1000, 0.5)),
            "17",  # given per query: used as is
        ]
        # At least 4x the reference rows: 2x the filtered value, 3.3x the unfiltered one.
        assert int(seen[0]) >= 66 and int(seen[1]) >= 60
    finally:
        db.close()


def test_vector_lists_reuse_one_plan_and_the_others_are_planned_per_value(
    loaded: Engram, workload: Workload
) -> None:
    """How each search statement is planned: a vector list alone, exact or HNSW, prepared with
    a generic plan (the store chose its path), and so is the first search of one user's
    memories (which counts its rows), as PostgreSQL reads one user's rows through their index
    whichever user it is; a list of words planned for its values."""
    store = loaded.engine.store
    assert isinstance(store, PostgresStore)
    seen: list[tuple[str | None, bool | None]] = []
    original = store._round_trip

    def spy(org, query, params, local=None, prepare=None, **kw):  # type: ignore[no-untyped-def]
        seen.append(((local or {}).get("plan_cache_mode"), prepare))
        return original(org, query, params, local, prepare=prepare, **kw)

    sizes = Counter(workload.users)
    small = sorted(u for u, c in sizes.items() if 5 <= c <= 20)[-1]  # not searched by the others
    q = queries(workload, workload.rows_of(small), 1, 900)[0].tolist()
    store._round_trip = spy  # type: ignore[method-assign]
    try:
        first = loaded.memories.search(embedding=q, mode="vector", user_id=small)
        again = loaded.memories.search(embedding=q, mode="vector", user_id=small)
        loaded.memories.search(embedding=q, mode="vector", exact=False)
        loaded.memories.search("memory", embedding=q, user_id=small)
    finally:
        del store._round_trip
    searches = [s for s in seen if s[0] is not None]
    assert searches == [
        ("force_generic_plan", True),  # the probe: once per filter
        ("force_generic_plan", True),  # exact, remembered
        ("force_generic_plan", True),  # HNSW
        ("force_custom_plan", True),  # exact + words
    ]
    assert [h.memory.id for h in again] == [h.memory.id for h in first]
    assert [h.score for h in again] == pytest.approx([h.score for h in first])


def _explain(url: str, query: Any, params: list[Any], local: dict[str, str], generic: bool) -> str:
    """The plan of a search statement under its settings: for its values, or (``generic``) as
    planned without them, as a prepared statement with a generic plan is."""
    with psycopg.connect(url) as conn:
        register_vector(conn)
        for name, value in local.items():
            conn.execute("SELECT set_config(%s, %s, true)", (name, value))
        if generic:
            # EXPLAIN (GENERIC_PLAN) takes $n placeholders and no values.
            text = numbered(query.as_string())
            rows = conn.execute(f"EXPLAIN (GENERIC_PLAN) {text}").fetchall()  # type: ignore[call-overload]
        else:
            rows = conn.execute(sql.SQL("EXPLAIN ") + query, params).fetchall()
        return "\n".join(r[0] for r in rows)


def test_a_rare_value_of_a_column_with_few_values_is_planned_for_that_value(
    pg_url: str, workload: Workload
) -> None:
    """Five memories of a kind beside 4,000 of another. Planned without its value, ``kind = $1``
    is estimated at half the table, and that plan reads the organization's rows to find five
    (12 ms instead of 1.2 at 10,000 memories, growing with the table): the search of that kind
    must be planned for its value, first search and later ones, and find its five memories."""
    db = open_loaded(pg_url, workload)
    try:
        rng = np.random.default_rng(5)
        vectors = rng.standard_normal((5, TEST_DIMENSIONS)).astype(np.float32)
        rare = db.memories.add_many(
            [{"content": f"decision {i}", "kind": "decision", "embedding": v.tolist()}
             for i, v in enumerate(vectors)]
        )  # fmt: skip
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("ANALYZE memories")
        store = db.engine.store
        assert isinstance(store, PostgresStore)
        captured: list[tuple[Any, list[Any], dict[str, str], Any]] = []
        original = store._round_trip

        def spy(org, query, params, local=None, prepare=None, **kw):  # type: ignore[no-untyped-def]
            captured.append((query, list(params), dict(local or {}), prepare))
            return original(org, query, params, local, prepare=prepare, **kw)

        q = rng.standard_normal(TEST_DIMENSIONS)
        store._round_trip = spy  # type: ignore[method-assign]
        try:
            first = db.memories.search(embedding=q.tolist(), mode="vector", kind="decision")
            again = db.memories.search(embedding=q.tolist(), mode="vector", kind="decision")
        finally:
            del store._round_trip
    finally:
        db.close()
    sims = vectors @ q / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q))
    expected = [rare[i].id for i in np.argsort(-sims)]
    assert [h.memory.id for h in first] == expected
    assert [h.memory.id for h in again] == expected
    searches = [(c[2].get("plan_cache_mode"), c[3]) for c in captured if "plan_cache_mode" in c[2]]
    assert searches == [("force_custom_plan", False), ("force_custom_plan", True)]
    # The case is real: the statement's plan for its value reads the kind's index, and its
    # generic plan does not.
    query, params, local, _ = captured[-1]
    assert "memories_kind_idx" in _explain(pg_url, query, params, local, generic=False)
    assert "memories_kind_idx" not in _explain(pg_url, query, params, local, generic=True)


def test_the_graph_is_used_on_a_table_never_analyzed(pg_url: str, workload: Workload) -> None:
    """Memories added with add_many and searched before any ANALYZE: the planner, guessing a
    handful of rows, would sort the whole table instead of walking the graph it was told to
    use (15 ms instead of 1.4 at 10,000 memories). The search must still use the HNSW index."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        # Autovacuum would analyze the table once enough rows arrive (seen after 1,000 of the
        # 1,500 here, on a busy machine), and the case under test is a table never analyzed.
        conn.execute("ALTER TABLE memories SET (autovacuum_enabled = false)")
    db = connect(pg_url, embedder=NoEmbedder(TEST_DIMENSIONS), settings=Settings())
    try:
        items = [
            {"content": f"memory {i}", "user_id": workload.users[i],
             "embedding": workload.vectors[i].tolist()}
            for i in range(1500)
        ]  # fmt: skip
        for start in range(0, len(items), 500):
            db.memories.add_many(items[start : start + 500])
        store = db.engine.store
        assert isinstance(store, PostgresStore)
        captured: list[tuple[Any, Any, dict[str, str]]] = []
        original = store._round_trip

        def spy(org, query, params, local=None, **kw):  # type: ignore[no-untyped-def]
            captured.append((query, params, dict(local or {})))
            return original(org, query, params, local, **kw)

        store._round_trip = spy  # type: ignore[method-assign]
        try:
            q = queries(workload, workload.rows_of(None), 1, 77)[0].tolist()
            assert db.memories.search(embedding=q, mode="vector", exact=False)
        finally:
            del store._round_trip
    finally:
        db.close()
    query, params, local = next(c for c in captured if "hnsw.ef_search" in c[2])
    assert local.get("enable_sort") == "off"

    def plan(settings: dict[str, str], generic: bool = False) -> str:
        with psycopg.connect(pg_url) as conn:
            never = conn.execute(
                "SELECT reltuples FROM pg_class WHERE relname = 'memories'"
            ).fetchone()
            assert never == (-1.0,)  # the table has never been analyzed
        return _explain(pg_url, query, params, settings, generic)

    assert "Index Scan using memories_embedding_" in plan(local)
    # The case is real: left to itself the planner sorts every row here.
    assert "Index Scan using memories_embedding_" not in plan(
        {k: v for k, v in local.items() if k != "enable_sort"}
    )
    # The statement runs with a generic plan (built without its values, LIMIT included): it
    # must walk the graph too, and would not without the setting.
    assert local.get("plan_cache_mode") == "force_generic_plan"
    assert "Index Scan using memories_embedding_" in plan(local, generic=True)
    assert "Index Scan using memories_embedding_" not in plan(
        {k: v for k, v in local.items() if k != "enable_sort"}, generic=True
    )
