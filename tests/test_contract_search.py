"""More of the memory contract on every backend (BACKENDS in conftest): exact filtered vector
search against brute force, liveness in every search mode, metrics, stable pagination, and the
errors of deleted memories."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import engramdb
from engramdb import Engram
from tests.conftest import open_backend

NOW = datetime.now(UTC)
PAST = NOW - timedelta(days=1)


@dataclass
class Row:
    """One stored memory and what a filter needs to know about it."""

    item: dict[str, Any]
    vector: np.ndarray
    live: bool = True
    id: Any = None


def _population(dim: int, n: int = 240) -> list[Row]:
    rng = np.random.default_rng(7)
    rows = []
    for i in range(n):
        vec = rng.standard_normal(dim)
        item: dict[str, Any] = {
            "content": f"memory number {i} about topic {i % 5}",
            "agent_id": "small" if i % 10 == 0 else "big",
            "user_id": f"u{i % 3}",
            "kind": "semantic" if i % 4 == 0 else "episodic",
            "tags": ["even"] if i % 2 == 0 else ["odd"],
            "metadata": {"n": i},
            "importance": round(i / n, 3),
            "embedding": vec.tolist(),
        }
        live = True
        if i % 37 == 5:  # expired: only include_expired finds it
            item["expires_at"] = PAST
            live = False
        if i % 41 == 7:  # valid in the past only: only as_of finds it
            item["valid_from"] = PAST - timedelta(days=30)
            item["valid_to"] = PAST
            live = False
        rows.append(Row(item, vec, live))
    return rows


def _load(db: Engram, rows: list[Row]) -> None:
    made = db.memories.add_many([r.item for r in rows])
    for row, mem in zip(rows, made, strict=True):
        row.id = mem.id
    for i in range(3, len(rows), 29):  # some deleted: include_deleted finds them
        db.memories.delete(rows[i].id)
        rows[i].live = False


#: (search scope keyword arguments, the same condition in Python).
SCOPES: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ({}, lambda r: True),
    ({"agent_id": "big"}, lambda r: r["agent_id"] == "big"),
    ({"agent_id": "small"}, lambda r: r["agent_id"] == "small"),
    ({"user_id": "u1", "kind": "semantic"}, lambda r: r["user_id"] == "u1" and r["kind"] == "semantic"),
    ({"filters": {"metadata.n": {"$lt": 40}}}, lambda r: r["metadata"]["n"] < 40),
    ({"tags": "even", "filters": {"importance": {"$gte": 0.5}}},
     lambda r: "even" in r["tags"] and r["importance"] >= 0.5),
    ({"filters": {"$not": {"agent_id": "big"}}}, lambda r: r["agent_id"] != "big"),
]  # fmt: skip


def _brute_force(rows: list[Row], q: np.ndarray, k: int) -> list[tuple[Any, float]]:
    sims = [
        (float(r.vector @ q / (np.linalg.norm(r.vector) * np.linalg.norm(q))), r.id) for r in rows
    ]
    sims.sort(key=lambda x: -x[0])
    return [(i, max(s, 0.0)) for s, i in sims[:k]]


def test_exact_filtered_vector_search_is_brute_force(db: Engram) -> None:
    rows = _population(db.embedder.dimensions)
    _load(db, rows)
    queries = np.random.default_rng(11).standard_normal((3, db.embedder.dimensions))
    checked = 0
    for kw, pred in SCOPES:
        candidates = [r for r in rows if r.live and pred(r.item)]
        assert candidates, kw
        for q in queries:
            hits = db.memories.search(
                embedding=q.tolist(), mode="vector", top_k=10, exact=True, **kw
            )
            want = _brute_force(candidates, q, 10)
            assert [h.memory.id for h in hits] == [i for i, _ in want], kw
            assert [h.score for h in hits] == pytest.approx([s for _, s in want], abs=1e-4)
            checked += len(hits)
    assert checked > 100


def test_search_modes_respect_deletion_expiry_and_validity(db: Engram) -> None:
    dim = db.embedder.dimensions
    axis = [[1.0 if j == i else 0.0 for j in range(dim)] for i in range(4)]
    gone = db.memories.add("the zebra escaped", agent_id="z", embedding=axis[0])
    stale = db.memories.add("the zebra was fed", agent_id="z", embedding=axis[1], expires_at=PAST)
    old = db.memories.add(
        "the zebra lived in Paris",
        agent_id="z",
        embedding=axis[2],
        valid_from=PAST - timedelta(days=30),
        valid_to=PAST,
    )
    live = db.memories.add("the zebra sleeps", agent_id="z", embedding=axis[3])
    db.memories.delete(gone.id)
    then = PAST - timedelta(days=2)
    for mode in ("vector", "text", "hybrid"):
        query: dict[str, Any] = {"mode": mode, "agent_id": "z", "top_k": 10}
        if mode != "vector":
            query["query"] = "zebra"
        if mode != "text":
            query["embedding"] = [sum(v) for v in zip(*axis, strict=True)]

        def ids(**kw: Any) -> set[Any]:
            return {h.memory.id for h in db.memories.search(**query, **kw)}  # noqa: B023

        assert ids() == {live.id}, mode
        assert ids(include_deleted=True) == {live.id, gone.id}, mode
        assert ids(include_expired=True) == {live.id, stale.id}, mode
        # A memory without a validity period holds at every moment.
        assert ids(as_of=then) == {old.id, live.id}, mode


def test_updated_vector_is_what_vector_search_finds(db: Engram) -> None:
    dim = db.embedder.dimensions
    axis = [[1.0 if j == i else 0.0 for j in range(dim)] for i in range(3)]
    a = db.memories.add("a", user_id="u", embedding=axis[0])
    b = db.memories.add("b", user_id="u", embedding=axis[1])
    assert db.memories.search(embedding=axis[2], mode="vector", top_k=1)[0].score == 0.0
    db.memories.update(a.id, embedding=axis[2])
    hits = db.memories.search(embedding=axis[2], mode="vector", top_k=2)
    assert [h.memory.id for h in hits] == [a.id, b.id]
    assert [h.score for h in hits] == pytest.approx([1.0, 0.0], abs=1e-6)
    db.memories.delete(a.id, purge=True)
    assert [h.memory.id for h in db.memories.search(embedding=axis[2], mode="vector")] == [b.id]


@pytest.mark.parametrize(
    ("metric", "scores"),
    [
        # l2: 1 / (1 + distance); ip: the inner product, clamped to [0, 1].
        ("l2", [1 / (1 + 0.5), 1 / (1 + 2**0.5)]),
        ("ip", [1.0, 0.0]),
    ],
)
def test_other_metrics_mean_the_same_everywhere(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    metric: str,
    scores: list[float],
) -> None:
    db = open_backend(backend, request, tmp_path, metric=metric)
    try:
        dim = db.embedder.dimensions
        near = [0.0] * dim
        near[0] = 1.5  # l2 distance 0.5 from the query, inner product 1.5 (clamped to 1)
        far = [0.0] * dim
        far[1] = 1.0  # l2 distance sqrt(2), inner product 0
        q = [0.0] * dim
        q[0] = 1.0
        a = db.memories.add("near", embedding=near, agent_id="m")
        b = db.memories.add("far", embedding=far, agent_id="m")
        for exact in (True, None):
            hits = db.memories.search(embedding=q, mode="vector", agent_id="m", exact=exact)
            assert [h.memory.id for h in hits] == [a.id, b.id]
            assert [h.score for h in hits] == pytest.approx(scores, abs=1e-5)
    finally:
        db.close()


def test_every_filter_finds_the_same_rows_by_search_and_by_list(db: Engram) -> None:
    rows = _population(db.embedder.dimensions, n=120)
    _load(db, rows)
    q = np.ones(db.embedder.dimensions).tolist()
    for kw, pred in SCOPES:
        listed = {m.id for m in db.memories.list(limit=500, **kw).items}
        assert listed == {r.id for r in rows if r.live and pred(r.item)}, kw
        found = {
            h.memory.id
            for h in db.memories.search(embedding=q, mode="vector", top_k=500, exact=True, **kw)
        }
        assert found == listed, kw
        texts = {h.memory.id for h in db.memories.search("memory", mode="text", top_k=500, **kw)}
        assert texts == listed, kw


def test_pagination_is_stable_while_memories_come_and_go(db: Engram) -> None:
    made = db.memories.add_many([{"content": f"page item {i}", "agent_id": "p"} for i in range(12)])
    newest_first = sorted((m.id for m in made), reverse=True)
    first = db.memories.list(agent_id="p", limit=5)
    assert [m.id for m in first.items] == newest_first[:5]
    # Between pages: a newer memory arrives, one not yet seen is deleted, one seen is too.
    db.memories.add("page item late", agent_id="p")
    db.memories.delete(newest_first[7])
    db.memories.delete(newest_first[0])
    seen = [m.id for m in first.items]
    cursor = first.next_cursor
    while cursor is not None:
        page = db.memories.list(agent_id="p", limit=5, cursor=cursor)
        seen.extend(m.id for m in page.items)
        cursor = page.next_cursor
    assert seen == [i for i in newest_first if i != newest_first[7]]


def test_deleted_memories_refuse_changes_on_every_backend(db: Engram) -> None:
    m = db.memories.add("short lived", agent_id="a")
    db.memories.delete(m.id)
    with pytest.raises(engramdb.NotFound):
        db.memories.delete(m.id)
    with pytest.raises(engramdb.NotFound):
        db.memories.update(m.id, content="revived")
    assert [v.event for v in db.memories.history(m.id)] == ["delete", "current"]
    db.memories.delete(m.id, purge=True)  # a soft-deleted memory can still be purged
    with pytest.raises(engramdb.NotFound):
        db.memories.history(m.id)


def test_batches_deduplicate_against_stored_memories(db: Engram) -> None:
    first = db.memories.add("likes jazz", agent_id="bot", user_id="u")
    out = db.memories.add_many(
        [
            {"content": "likes jazz", "agent_id": "bot", "user_id": "u"},
            {"content": "likes jazz", "agent_id": "bot", "user_id": "v"},
            {"content": "likes blues", "agent_id": "bot", "user_id": "u"},
        ]
    )
    assert out[0].id == first.id
    assert len({first.id, out[1].id, out[2].id}) == 3
    assert {m.content for m in db.memories.list(agent_id="bot").items} == {
        "likes jazz",
        "likes blues",
    }
    assert len(db.memories.list(agent_id="bot").items) == 3
