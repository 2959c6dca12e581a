"""A search hit's memory (read by the search statement, with its access counts) is the memory
get() and list() read: field for field and as serialized, for a memory with every field set, in
a session whose time zone is not UTC, for each kind of list a search runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from engramdb import Engram, Settings, connect
from engramdb.embeddings.hashing import HashEmbedder
from engramdb.models import Memory
from tests.conftest import TEST_DIMENSIONS

METADATA = {
    "n": 12345678901234567890,
    "f": 0.1,
    "nested": {"a": [1, 2.5, None, True]},
    "s": "é\u2028x",
    "empty": {},
}
SEARCHES = [
    {"mode": "vector"},
    {"mode": "vector", "exact": True},
    {"mode": "vector", "exact": False},
    {"mode": "vector", "agent_id": "agent-1"},  # the first search of a filter: the probe
    {"mode": "text"},
    {"mode": "hybrid"},  # both lists: the memory comes twice and is merged
]


@pytest.fixture
def url(pg_url: str) -> str:
    # Times come back in the session's zone, whichever way they are read.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        name = conn.info.dbname
        conn.execute(f"ALTER DATABASE \"{name}\" SET timezone = 'America/New_York'")
    return pg_url


def _full(db_view: Engram, vector: list[float], other: Memory) -> Memory:
    now = datetime.now(UTC)
    return db_view.memories.add(
        'A "quoted" memory\nwith a tab\t, a backslash \\ and unicode: é, 雪, 🧠',
        agent_id="agent-1",
        user_id="user.1",
        room_id="room:1",
        kind="episodic",
        tags=["alpha", "with space", "ünï"],
        metadata=METADATA,
        importance=0.3,  # a real (float4): its text is "0.3" both ways
        data={"k": "v", "list": [1, "two"]},
        embedding=vector,
        scope="shared",
        level="high",
        related_ids=[other.id],
        valid_from=now - timedelta(days=3, microseconds=7),
        valid_to=now + timedelta(days=30),
        expires_at=now + timedelta(days=60, seconds=1),
        created_at=now - timedelta(days=5, microseconds=123),
    )


def test_search_memories_equal_the_stored_rows(url: str) -> None:
    embedder = HashEmbedder(TEST_DIMENSIONS)
    base = connect(url, embedder=embedder, settings=Settings())
    try:
        db = base.for_organization("default", actor="alice")
        rng = np.random.default_rng(3)
        vector = rng.standard_normal(TEST_DIMENSIONS).tolist()
        other = db.memories.add(
            "another memory, far away", embedding=(-np.asarray(vector)).tolist()
        )
        memory = _full(db, vector, other)
        memory = db.memories.update(memory.id, importance=0.7)  # version 2, updated_at moves on
        db.memories.search(embedding=vector, mode="vector")
        for options in SEARCHES:
            # Counted accesses written first, so none lands between reading the rows and the
            # search (which counts its own after reading them).
            base.flush()
            stored = {m.id: db.memories.get(m.id) for m in (memory, other)}
            assert stored[memory.id].access_count >= 1
            assert stored[memory.id].last_accessed_at is not None
            hits = db.memories.search("quoted memory unicode", embedding=vector, **options)
            assert memory.id in {h.memory.id for h in hits}, options
            for hit in hits:
                assert hit.memory == stored[hit.memory.id], options
                assert hit.memory.model_dump_json() == stored[hit.memory.id].model_dump_json()
        base.flush()
        stored_memory = db.memories.get(memory.id)
        assert stored_memory.version == 2 and stored_memory.created_by_id == "alice"
        assert stored_memory.created_at.utcoffset() == timedelta(hours=-5)  # New York, December
        assert (
            stored_memory.related_ids == [other.id]
            and stored_memory.metadata["n"] == 12345678901234567890
        )
        listed = db.memories.list(agent_id="agent-1").items
        assert listed == [stored_memory]
    finally:
        base.close()
