"""SQLite's exact vector search: both of its paths give brute force's answer.

A filter matching few rows is searched over those rows alone (the probe); any other goes through
the whole partition in distance order, checking candidates in rounds and, when too few pass,
over the filtered rows after all. ``PROBE_ROWS`` decides which: each test runs with it as
shipped (the probe takes every filter here) and at 0 (the probe never does).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engramdb import Engram, Settings, connect
from engramdb.embeddings.hashing import HashEmbedder
from engramdb.store.sqlite import vectors

DIM = 8


@pytest.fixture(params=["probe", "scan"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Engram]:
    if request.param == "scan":
        monkeypatch.setattr(vectors, "PROBE_ROWS", 0)
    conn = connect(
        f"sqlite:///{tmp_path / 'm.db'}", embedder=HashEmbedder(DIM), settings=Settings()
    )
    yield conn
    conn.close()


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_a_small_scope_far_from_the_query_is_found(db: Engram) -> None:
    """1,500 rows near the query, 8 needles far from it: the rounds of candidates never reach
    the needles, so the scan path must fall back to the filtered rows."""
    rng = np.random.default_rng(3)
    query = np.zeros(DIM)
    query[0] = 1.0
    crowd = [
        {"content": f"crowd {i}", "agent_id": "crowd", "embedding": (query + 0.1 * rng.standard_normal(DIM)).tolist()}
        for i in range(1500)
    ]  # fmt: skip
    side = np.zeros(DIM)
    side[1] = 1.0  # needles: similarity ~0.3, distinct, positive (scores are clamped at 0)
    needles = [side + 0.3 * query + 0.05 * rng.standard_normal(DIM) for _ in range(8)]
    db.memories.add_many(crowd)
    made = db.memories.add_many(
        [{"content": f"needle {i}", "agent_id": "needle", "embedding": v.tolist()} for i, v in enumerate(needles)]
    )  # fmt: skip
    hits = db.memories.search(embedding=query.tolist(), mode="vector", agent_id="needle", top_k=5)
    order = sorted(range(8), key=lambda i: -_cosine(needles[i], query))[:5]
    assert [h.memory.id for h in hits] == [made[i].id for i in order]
    unfiltered = db.memories.search(embedding=query.tolist(), mode="vector", top_k=5)
    assert all(h.memory.agent_id == "crowd" for h in unfiltered)


@pytest.mark.parametrize(
    "scope",
    [
        {},
        {"agent_id": "a1"},
        {"agent_id": "a0"},
        {"tags": "t2", "filters": {"importance": {"$gt": 0.3}}},
        {"filters": {"metadata.n": {"$gte": 200}}},
    ],
)
def test_filtered_search_is_exact(db: Engram, scope: dict[str, Any]) -> None:
    rng = np.random.default_rng(5)
    vecs = rng.standard_normal((400, DIM))
    items = [
        {"content": f"row {i}", "agent_id": "a0" if i % 9 == 0 else "a1", "tags": [f"t{i % 3}"],
         "importance": (i % 10) / 10, "metadata": {"n": i}, "embedding": v.tolist()}
        for i, v in enumerate(vecs)
    ]  # fmt: skip
    made = db.memories.add_many(items)
    for i in range(0, 400, 7):  # deleted rows stay in the cache until the next sync
        db.memories.delete(made[i].id)
    queries = rng.standard_normal((4, DIM))
    allowed = {m.id for m in db.memories.list(limit=1000, **scope).items}
    assert 0 < len(allowed) < 400
    for q in queries:
        hits = db.memories.search(embedding=q.tolist(), mode="vector", top_k=15, **scope)
        want = sorted(
            (i for i in range(400) if made[i].id in allowed), key=lambda i: -_cosine(vecs[i], q)
        )[:15]
        assert [h.memory.id for h in hits] == [made[i].id for i in want]
        assert [h.score for h in hits] == pytest.approx(
            [max(_cosine(vecs[i], q), 0.0) for i in want], abs=1e-6
        )
