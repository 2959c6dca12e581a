"""Tenant isolation on SQLite: no row-level security, so every query carries the organization."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import engramdb
from engramdb import Settings, connect
from engramdb.embeddings.hashing import HashEmbedder
from engramdb.store.sqlite import SQLiteStore

DIM = 16


@pytest.fixture
def two(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = connect(f"sqlite:///{tmp_path / 'm.db'}", embedder=HashEmbedder(DIM), settings=Settings())
    yield db, db.for_organization("acme")
    db.close()


def test_capability_is_declared_with_its_reason() -> None:
    caps = SQLiteStore.capabilities
    assert caps.row_level_security is False
    assert "organization" in caps.reasons["row_level_security"]


def test_no_operation_crosses_organizations(two) -> None:  # type: ignore[no-untyped-def]
    default, acme = two
    mine = default.memories.add("shared words about the launch plan", agent_id="bot", user_id="u")
    theirs = acme.memories.add("shared words about the launch plan", agent_id="bot", user_id="u")
    assert mine.id != theirs.id  # dedup is per organization too
    for db, own, other in ((default, mine, theirs), (acme, theirs, mine)):
        assert [m.id for m in db.memories.list().items] == [own.id]
        for mode in ("hybrid", "vector", "text"):
            assert [h.memory.id for h in db.memories.search("launch plan", mode=mode)] == [own.id]
        hits = db.memories.search(embedding=HashEmbedder(DIM).embed_documents(["x"])[0].tolist())
        assert [h.memory.id for h in hits] == [own.id]
        for call in (
            lambda db=db, other=other: db.memories.get(other.id, include_deleted=True),
            lambda db=db, other=other: db.memories.history(other.id),
            lambda db=db, other=other: db.memories.update(other.id, content="hijacked"),
            lambda db=db, other=other: db.memories.delete(other.id),
            lambda db=db, other=other: db.memories.delete(other.id, purge=True),
        ):
            with pytest.raises(engramdb.NotFound):
                call()
    assert default.memories.get(mine.id).content == acme.memories.get(theirs.id).content
    assert len(default.memories.history(mine.id)) == 1
    with pytest.raises(engramdb.NotFound):
        acme.memories.get(uuid.uuid4())


def test_scopes_are_registered_per_organization(two) -> None:  # type: ignore[no-untyped-def]
    default, acme = two
    default.memories.add("a", agent_id="bot", user_id="alice", room_id="r1")
    acme.memories.add("b", agent_id="bot", user_id="alice", room_id="r1")
    store = default.engine.store
    with store.db.read() as conn:
        rows = conn.execute("SELECT organization_id, id FROM agents ORDER BY 1").fetchall()
    assert rows == [("acme", "bot"), ("default", "bot")]


def test_access_counts_stay_in_their_organization(two) -> None:  # type: ignore[no-untyped-def]
    default, acme = two
    mine = default.memories.add("counted", agent_id="a")
    store = acme.engine.store
    store.record_access("acme", {mine.id: 5}, mine.created_at)
    default.flush()
    assert default.memories.get(mine.id).access_count == 0
