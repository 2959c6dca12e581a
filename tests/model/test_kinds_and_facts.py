"""Episodic and semantic memories as typed kinds, links between memories, and facts that change
over time (supersede, ``as_of``), on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import engramdb
from engramdb import Engram


def test_kinds_are_validated_per_kind_and_nothing_is_written(db: Engram) -> None:
    ep = db.memories.add(
        "deploy failed: disk full", kind="episodic", agent_id="ops", importance="critical",
        data={"event_type": "error", "summary": "deploy failed", "details": {"disk": "/var"},
              "context": {"host": "a"}, "decision": "rolled back", "custom": 1},
    )  # fmt: skip
    assert (
        ep.importance == 1.0 and ep.data["custom"] == 1 and ep.data["details"] == {"disk": "/var"}
    )
    fact = db.memories.add(
        "Paris is the capital of France", kind="semantic",
        data={"concept": "France", "category": "geography", "source": "atlas", "confidence": 0.9},
    )  # fmt: skip
    assert fact.data["confidence"] == 0.9
    bad = [
        ("episodic", {"event_type": "Not An Identifier"}),
        ("episodic", {"summary": "x" * 5000}),
        ("episodic", {"context": "not an object"}),
        ("episodic", {"related_memories": ["not-a-uuid"]}),
        ("semantic", {"confidence": 1.5}),
        ("semantic", {"concept": ""}),
    ]
    for kind, data in bad:
        with pytest.raises(engramdb.InvalidInput):
            db.memories.add("bad", kind=kind, data=data)
    with pytest.raises(engramdb.InvalidInput):
        db.memories.add("bad", kind="episodic", importance="urgent")
    with pytest.raises(engramdb.InvalidInput):
        db.memories.add_many([{"content": "ok", "kind": "semantic"},
                              {"content": "bad", "kind": "semantic", "data": {"confidence": -1}}])  # fmt: skip
    with pytest.raises(engramdb.InvalidInput):
        db.memories.update(fact.id, data={"confidence": 7})
    assert db.memories.get(fact.id).data["confidence"] == 0.9
    assert {m.content for m in db.memories.list().items} == {ep.content, fact.content}


def test_filter_typed_fields_error_events_this_week_at_least_high(db: Engram) -> None:
    now = datetime.now(UTC)
    events = [
        ("disk full", "error", "critical", "ops", now - timedelta(days=1)),
        ("timeout talking to the API", "error", "high", "ops", now - timedelta(days=2)),
        ("typo in a log line", "error", "low", "ops", now - timedelta(days=1)),
        ("old outage", "error", "critical", "ops", now - timedelta(days=20)),
        ("deployed v2", "milestone", "high", "ops", now - timedelta(days=1)),
        ("other agent's error", "error", "critical", "other", now - timedelta(days=1)),
    ]
    db.memories.add_many(
        [{"content": c, "kind": "episodic", "agent_id": a, "importance": i, "created_at": t,
          "data": {"event_type": e, "summary": c}} for c, e, i, a, t in events]
    )  # fmt: skip
    db.memories.add("errors are bad", kind="semantic", agent_id="ops", importance="critical",
                    data={"concept": "error"})  # fmt: skip
    week = {
        "data.event_type": "error",
        "importance": {"$gte": "high"},  # the seeds' level names work in filters too
        "created_at": {"$gte": (now - timedelta(days=7)).isoformat()},
    }
    found = db.memories.list(agent_id="ops", kind="episodic", filters=week).items
    assert {m.content for m in found} == {"disk full", "timeout talking to the API"}
    hits = db.memories.search("disk", agent_id="ops", kind="episodic", filters=week, mode="text")
    assert [h.memory.content for h in hits] == ["disk full"]
    semantic = db.memories.list(kind="semantic", filters={"data.concept": "error"}).items
    assert [m.content for m in semantic] == ["errors are bad"]
    with pytest.raises(engramdb.InvalidFilter):
        db.memories.list(filters={"importance": {"$gte": "very"}})


def test_memory_links_followed_both_ways(db: Engram) -> None:
    cause = db.memories.add("the disk filled up", kind="episodic", agent_id="ops")
    effect = db.memories.add("the deploy failed", kind="episodic", agent_id="ops",
                             related_ids=[cause.id])  # fmt: skip
    lesson = db.memories.add("watch disk usage before deploys", kind="semantic", agent_id="ops")
    db.memories.link(lesson.id, effect.id, "learned_from", metadata={"by": "review"})
    assert [m.id for m in db.memories.related(cause.id)] == [effect.id]  # followed backwards
    assert {m.id for m in db.memories.related(effect.id)} == {cause.id, lesson.id}
    assert [m.id for m in db.memories.related(effect.id, direction="out")] == [cause.id]
    assert [m.id for m in db.memories.related(effect.id, direction="in")] == [lesson.id]
    links = db.memories.links(effect.id, kind="learned_from")
    assert [(x.source_id, x.target_id, x.metadata) for x in links] == [
        (lesson.id, effect.id, {"by": "review"})
    ]
    with pytest.raises(engramdb.Conflict):
        db.memories.link(lesson.id, effect.id, "learned_from")
    with pytest.raises(engramdb.InvalidInput):
        db.memories.link(lesson.id, lesson.id)
    with pytest.raises(engramdb.InvalidInput):
        db.memories.link(lesson.id, effect.id, "Bad Kind!")
    with pytest.raises(engramdb.NotFound):
        db.memories.link(lesson.id, "0190d3f0-0000-7000-8000-000000000000")
    with pytest.raises(engramdb.InvalidInput):
        db.memories.links(effect.id, direction="up")
    db.memories.unlink(lesson.id, effect.id, "learned_from")
    assert [m.id for m in db.memories.related(effect.id)] == [cause.id]
    # a soft-deleted memory is not followed; purging it removes its links
    db.memories.delete(cause.id)
    assert db.memories.related(effect.id) == []
    db.memories.delete(cause.id, purge=True)
    assert db.memories.links(effect.id) == []


def test_supersede_closes_the_old_fact(db: Engram) -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    t1 = datetime(2025, 6, 16, tzinfo=UTC)
    old = db.memories.add("Marcus works as a corporate architect", user_id="marcus",
                          agent_id="assistant", data={"concept": "occupation"}, valid_from=t0)  # fmt: skip
    new = db.memories.supersede(old.id, "Marcus works as a sustainable building consultant",
                                valid_from=t1)  # fmt: skip
    assert (new.user_id, new.agent_id, new.kind, new.data) == (
        "marcus", "assistant", "semantic", {"concept": "occupation"},
    )  # fmt: skip
    closed = db.memories.get(old.id)
    assert closed.valid_to == t1 and new.valid_from == t1
    now_hits = db.memories.search("Marcus works as", user_id="marcus", mode="text")
    assert [h.memory.id for h in now_hits] == [new.id]
    then = db.memories.search(
        "Marcus works as", user_id="marcus", mode="text", as_of=t1 - timedelta(days=1)
    )
    assert [h.memory.id for h in then] == [old.id]
    assert [m.id for m in db.memories.list(user_id="marcus", as_of="2025-03-01").items] == [old.id]
    assert [m.id for m in db.memories.related(new.id, kind="supersedes")] == [old.id]
    assert [e.event for e in db.memories.history(old.id)] == ["supersede", "current"]
    # the old one cannot be superseded twice, nor by a fact starting before it
    with pytest.raises(engramdb.Conflict):
        db.memories.supersede(old.id, "Marcus is a chef", valid_from=t1 + timedelta(days=1))
    with pytest.raises(engramdb.InvalidInput):
        db.memories.supersede(new.id, "Marcus is a chef", valid_from=t0)
    assert db.memories.get(new.id).valid_to is None
    # supersedes= on add does the same, and A -> B -> A keeps three records
    t2 = datetime(2026, 1, 1, tzinfo=UTC)
    back = db.memories.add("Marcus works as a corporate architect", user_id="marcus",
                           agent_id="assistant", supersedes=new.id, valid_from=t2)  # fmt: skip
    assert back.id != old.id and db.memories.get(new.id).valid_to == t2
    history = db.memories.list(user_id="marcus", as_of=t2 - timedelta(days=1)).items
    assert [m.id for m in history] == [new.id]
    with pytest.raises(engramdb.NotFound):
        db.memories.supersede("0190d3f0-0000-7000-8000-000000000000", "x")
