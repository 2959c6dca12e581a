"""The same filters select the same memories on PostgreSQL and on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engramdb import Engram, Settings, connect
from engramdb.embeddings.hashing import HashEmbedder
from tests.conftest import TEST_DIMENSIONS

NOW = datetime.now(UTC)
ROWS: list[dict[str, Any]] = [
    {"content": "error: disk full", "kind": "episodic", "agent_id": "ops", "importance": 0.9,
     "tags": ["disk", "error"], "metadata": {"host": "a", "n": 5, "list": [1, 2, {"k": "v"}]},
     "data": {"event_type": "error"}},
    {"content": "error: timeout", "kind": "episodic", "agent_id": "ops", "importance": 0.4,
     "tags": ["net", "error"], "metadata": {"host": "b", "n": 7, "flag": True, "nested": {"x": 1}},
     "data": {"event_type": "error"}, "user_id": "alice"},
    {"content": "deploy finished", "kind": "episodic", "agent_id": "ops", "importance": 0.5,
     "tags": ["deploy"], "metadata": {"host": "a", "n": "7", "flag": False, "none": None,
                                      "list": ["x", "y"]},
     "data": {"event_type": "info"}, "room_id": "r1"},
    {"content": "ops prefers terse reports", "kind": "semantic", "agent_id": "ops",
     "metadata": {"n": 6.5, "nested": {"x": [1, 2]}, "none": None}, "scope": "team"},
    {"content": "an old fact", "kind": "semantic", "agent_id": "other",
     "valid_from": NOW - timedelta(days=10), "valid_to": NOW + timedelta(days=1),
     "metadata": {"host": "B"}},
]  # fmt: skip

FILTERS: list[dict[str, Any]] = [
    {"importance": {"$gte": 0.75}},
    {"importance": {"$lt": 0.45}},
    {"data.event_type": "error"},
    {"tags": ["disk", "error"]},
    {"tags": {"$any": ["net", "deploy"]}},
    {"tags": {"$all": []}},
    {"tags": {"$any": []}},
    {"tags": {"$none": ["error"]}},
    {"tags": "error"},
    {"metadata.host": "a"},
    {"metadata.host": {"$ne": "a"}},
    {"metadata.host": {"$gt": "B"}},
    {"metadata.n": {"$gt": 6}},
    {"metadata.n": {"$gte": "7"}},
    {"metadata.n": 7},
    {"metadata.n": 6.5},
    {"metadata.n": {"$in": [5, "7"]}},
    {"metadata.n": {"$nin": [5, "7"]}},
    {"metadata.n": {"$in": []}},
    {"metadata.flag": True},
    {"metadata.flag": {"$gt": False}},
    {"metadata.none": None},
    {"metadata.none": {"$gte": None}},
    {"metadata.none": {"$gt": None}},
    {"metadata.none": {"$exists": True}},
    {"metadata.host": {"$exists": False}},
    {"metadata": {"$contains": {"host": "b"}}},
    {"metadata": {"$contains": {"nested": {}}}},
    {"metadata.list": {"$contains": [2]}},
    {"metadata.list": {"$contains": [{"k": "v"}]}},
    {"metadata.nested": {"$contains": {"x": [2]}}},
    {"metadata.list.1": 2},
    {"metadata.list.1": {"$in": [2, "y"]}},
    {"metadata.list.-1": {"$exists": True}},
    {"metadata.list.0": {"$gte": "x"}},
    {"metadata.nested.x": 1},
    {"metadata.nested.x.1": {"$in": [2]}},
    {"$or": [{"importance": {"$lt": 0.45}}, {"kind": "semantic"}]},
    {"$not": {"kind": "episodic"}},
    {"$not": {"user_id": "alice"}},
    {"$not": {"metadata.n": {"$gt": 6}}},
    {"$and": [{"kind": "episodic"}, {"$not": {"tags": {"$any": ["net"]}}}]},
    {"user_id": {"$exists": True}},
    {"user_id": {"$ne": "alice"}},
    {"user_id": {"$nin": ["alice"]}},
    {"room_id": {"$in": ["r1", "r2"]}},
    {"agent_id": {"$ne": "ops"}},
    {"agent_id": {"$gte": "p"}},
    {"scope": "team"},
    {"version": 1},
    {"access_count": {"$gt": 0}},
    {"created_at": {"$gte": (NOW - timedelta(minutes=5)).isoformat()}},
    {"created_at": {"$lt": (NOW - timedelta(days=1)).isoformat()}},
    {"valid_from": {"$exists": True}},
    {"valid_to": {"$gt": NOW.isoformat()}},
    {"expires_at": {"$exists": False}},
    {"embedding_model": "hash-64"},
]


@pytest.fixture
def both(pg_url: str, tmp_path: Path) -> Iterator[tuple[Engram, Engram]]:
    dbs = []
    for url in (pg_url, f"sqlite:///{tmp_path / 'm.db'}"):
        db = connect(url, embedder=HashEmbedder(TEST_DIMENSIONS), settings=Settings())
        db.memories.add_many(ROWS)
        dbs.append(db)
    yield dbs[0], dbs[1]
    for db in dbs:
        db.close()


def _contents(db: Engram, flt: dict[str, Any], **kw: Any) -> list[str]:
    return sorted(m.content for m in db.memories.list(limit=100, filters=flt, **kw).items)


def test_every_filter_selects_the_same_memories(both: tuple[Engram, Engram]) -> None:
    pg, lite = both
    differ = {}
    selective = 0
    for flt in FILTERS:
        for kw in ({}, {"include_expired": True, "as_of": NOW - timedelta(days=5)}):
            a, b = _contents(pg, flt, **kw), _contents(lite, flt, **kw)
            if a != b:
                differ[repr((flt, kw))] = (a, b)
            selective += 0 < len(a) < len(ROWS)
    assert differ == {}
    assert selective > len(FILTERS)  # the filters do select: this comparison is not vacuous


def test_search_scores_mean_the_same(both: tuple[Engram, Engram]) -> None:
    pg, lite = both
    a = pg.memories.search("disk error", mode="vector", top_k=5)
    b = lite.memories.search("disk error", mode="vector", top_k=5)
    # Equal similarities (ties) may come in either order; the pairs must be the same.
    assert sorted((round(h.score, 4), h.memory.content) for h in a) == sorted(
        (round(h.score, 4), h.memory.content) for h in b
    )
    assert a[0].score > a[-1].score
    a = pg.memories.search("disk error", mode="hybrid", top_k=5)
    b = lite.memories.search("disk error", mode="hybrid", top_k=5)
    assert a[0].memory.content == b[0].memory.content == "error: disk full"
    a = pg.memories.search("error", mode="text")
    b = lite.memories.search("error", mode="text")
    assert {h.memory.content for h in a} == {h.memory.content for h in b}
    assert all(0 < h.score < 1 for h in a + b)
