"""Users, agents and per-agent memory configuration, on every backend."""

from __future__ import annotations

import asyncio

import pytest

import engramdb
from engramdb import Engram


def test_user_add_get_update_list(db: Engram) -> None:
    u = db.users.add(
        "alice", name="Alice", username="alice1", email="alice@example.com",
        avatar_url="https://x/a.png", timezone="Europe/Paris", details={"lang": "fr"},
    )  # fmt: skip
    assert (u.id, u.name, u.email, u.status, u.details) == (
        "alice",
        "Alice",
        "alice@example.com",
        "active",
        {"lang": "fr"},
    )
    assert u.organization_id == "default" and u.created_at is not None
    assert db.users.get("alice") == u
    u2 = db.users.update("alice", status="away", details={"lang": "en"})
    assert u2.status == "away" and u2.details == {"lang": "en"} and u2.name == "Alice"
    # add on an existing id fills in fields (ids are registered on first use)
    db.memories.add("bob likes tea", user_id="bob")
    bob = db.users.add("bob", name="Bob")
    assert bob.name == "Bob"
    assert [x.id for x in db.users.list().items] == ["alice", "bob"]
    assert [x.id for x in db.users.list(status="away").items] == ["alice"]


def test_user_bad_input_writes_nothing(db: Engram) -> None:
    with pytest.raises(engramdb.InvalidInput):
        db.users.add("carol", email="not-an-email")
    with pytest.raises(engramdb.InvalidInput):
        db.users.add("bad id with spaces")
    with pytest.raises(engramdb.InvalidInput):
        db.users.add("carol", shoe_size=42)
    with pytest.raises(engramdb.InvalidInput):
        db.users.add("carol", created_at="2020-01-01")
    with pytest.raises(engramdb.LimitExceeded):
        db.users.add("carol", name="x" * 40_000)
    with pytest.raises(engramdb.LimitExceeded):
        db.users.add("carol", details={"blob": "x" * 20_000})
    assert db.users.list().items == []
    with pytest.raises(engramdb.NotFound):
        db.users.get("carol")


def test_unique_email_conflict(db: Engram) -> None:
    db.users.add("a1", email="same@example.com")
    with pytest.raises(engramdb.Conflict):
        db.users.add("a2", email="same@example.com")
    with pytest.raises(engramdb.NotFound):
        db.users.get("a2")


def test_user_soft_delete_restore_and_purge(db: Engram) -> None:
    db.users.add("dave", name="Dave")
    m = db.memories.add("dave likes chess", user_id="dave")
    db.users.delete("dave")
    with pytest.raises(engramdb.NotFound):
        db.users.get("dave")
    assert db.users.get("dave", include_deleted=True).deleted_at is not None
    assert [u.id for u in db.users.list(include_deleted=True).items] == ["dave"]
    assert db.users.list().items == []
    restored = db.users.add("dave")
    assert restored.deleted_at is None and restored.name == "Dave"
    db.users.delete("dave", purge=True)
    with pytest.raises(engramdb.NotFound):
        db.users.get("dave", include_deleted=True)
    with pytest.raises(engramdb.NotFound):
        db.memories.get(m.id, include_deleted=True)  # cascaded


def test_agent_fields(db: Engram) -> None:
    a = db.agents.add(
        "travel-bot", name="Travel", agent_type="memgpt", description="books trips",
        system_prompt="You are helpful.", topic="travel", llm_config={"model": "gpt"},
        embedding_config={"dim": 64}, tool_rules=[{"tool": "search", "type": "run_first"}],
        metadata={"v": 1},
    )  # fmt: skip
    assert a.tool_rules == [{"tool": "search", "type": "run_first"}]
    assert db.agents.get("travel-bot").llm_config == {"model": "gpt"}
    assert db.agents.list(agent_type="memgpt").items[0].id == "travel-bot"
    with pytest.raises(engramdb.InvalidInput):
        db.agents.add("x", tool_rules="not a list")


def test_pagination_over_users(db: Engram) -> None:
    for i in range(7):
        db.users.add(f"u{i}")
    seen, cursor = [], None
    while True:
        page = db.users.list(limit=3, cursor=cursor)
        seen += [u.id for u in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"u{i}" for i in range(7)]
    with pytest.raises(engramdb.InvalidCursor):
        db.users.list(limit=3, cursor="garbage")
    first = db.users.list(limit=3)
    with pytest.raises(engramdb.InvalidCursor):
        db.users.list(limit=3, status="active", cursor=first.next_cursor)
    with pytest.raises(engramdb.InvalidInput):
        db.users.list(limit=0)


def test_agent_memory_config_defaults_and_bad_values(db: Engram) -> None:
    cfg = db.agents.config("bot")
    assert cfg.top_k is None and cfg.agent_id == "bot"
    cfg = db.agents.set_config("bot", top_k=2, threshold=0.1, recency_weight=0.2)
    assert (cfg.top_k, cfg.threshold, cfg.recency_weight) == (2, 0.1, 0.2)
    assert db.agents.config("bot").top_k == 2
    cfg = db.agents.set_config("bot", top_k=None)
    assert cfg.top_k is None and cfg.threshold == 0.1
    for bad in ({"top_k": 0}, {"threshold": 2}, {"fusion": "magic"}, {"colour": "red"}, {}):
        with pytest.raises(engramdb.InvalidInput):
            db.agents.set_config("bot", **bad)
    assert db.agents.config("bot").threshold == 0.1
    db.agents.reset_config("bot")
    assert db.agents.config("bot").threshold is None


def test_config_drives_search_and_add(db: Engram) -> None:
    for i in range(5):
        db.memories.add(f"note {i} about the weather", agent_id="bot")
    assert len(db.memories.search("weather", agent_id="bot")) == 5
    db.agents.set_config("bot", top_k=2)
    assert len(db.memories.search("weather", agent_id="bot")) == 2
    assert len(db.memories.search("weather", agent_id="bot", top_k=4)) == 4
    db.agents.set_config("bot", threshold=0.999)
    assert db.memories.search("weather", agent_id="bot", mode="vector") == []
    # importance weight from the config changes the hybrid ranking
    db.agents.set_config("bot", threshold=None, top_k=None)
    hits = db.memories.search("weather", agent_id="bot", explain=True)
    assert "importance" not in hits[0].scores or hits[0].scores["importance"] == 0
    db.agents.set_config("bot", importance_weight=0.5)
    weighted = db.memories.search("weather", agent_id="bot", explain=True)
    assert any(k.startswith("importance") for k in weighted[0].scores)
    # dedup threshold from the config: a near-identical memory is not stored again
    a = db.memories.add("the user likes green tea in the morning", agent_id="bot")
    b = db.memories.add("the user likes green tea in the morning!", agent_id="bot")
    assert a.id != b.id
    db.agents.set_config("bot", dedup_threshold=0.9)
    c = db.memories.add("the user likes green tea in the morning!!", agent_id="bot")
    assert c.id in (a.id, b.id)


def test_async_face(db: Engram) -> None:
    async def run() -> None:
        adb = engramdb.AsyncEngram(db)
        user = await adb.users.add("zed", name="Zed")
        assert user.name == "Zed"
        cfg = await adb.agents.set_config("bot", top_k=3)
        assert cfg.top_k == 3
        assert (await adb.agents.config("bot")).top_k == 3
        with pytest.raises(engramdb.NotFound):
            await adb.users.get("nobody")

    asyncio.run(run())


def test_retention_from_agent_config(db: Engram) -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    db.agents.set_config("bot", retention_days=30)
    old = db.memories.add("an old note", agent_id="bot", created_at=now - timedelta(days=40))
    kept = db.memories.add("a pinned note", agent_id="bot", created_at=now - timedelta(days=40),
                           expires_at=now + timedelta(days=365))  # fmt: skip
    fresh = db.memories.add("a fresh note", agent_id="bot")
    other = db.memories.add("another agent's old note", agent_id="other",
                            created_at=now - timedelta(days=40))  # fmt: skip
    assert old.expires_at is not None and old.expires_at < now
    assert fresh.expires_at is not None
    assert timedelta(days=29, hours=23) < fresh.expires_at - now < timedelta(days=30, minutes=5)
    assert other.expires_at is None
    live = {m.id for m in db.memories.list().items}
    assert live == {kept.id, fresh.id, other.id}
    assert old.id in {m.id for m in db.memories.list(include_expired=True).items}
    [message] = db.messages.add_many([{"role": "user", "text": "hello from long ago",
                                       "agent_id": "bot", "created_at": now - timedelta(days=40)}])  # fmt: skip
    assert db.messages.search("long ago", agent_id="bot", mode="text") == []
    assert db.messages.get(message.id).text == "hello from long ago"  # the message itself stays


def _count_config_reads(db: Engram) -> list[str]:
    """Record each read of agent configurations: 'all' for the organization's, else one id."""
    from engramdb.store.resources import AGENT_CONFIG

    if not hasattr(db, "engine"):
        pytest.skip("counts the reads of an in-process engine (the server's is covered by it)")
    store = db.engine.store
    reads: list[str] = []
    listing, getting = store.list_resources, store.get_resource

    def list_resources(org, spec, where, **kw):  # type: ignore[no-untyped-def]
        if spec is AGENT_CONFIG:
            reads.append("all")
        return listing(org, spec, where, **kw)

    def get_resource(org, spec, key, **kw):  # type: ignore[no-untyped-def]
        if spec is AGENT_CONFIG:
            reads.append(key[0])
        return getting(org, spec, key, **kw)

    store.list_resources = list_resources  # type: ignore[method-assign]
    store.get_resource = get_resource  # type: ignore[method-assign]
    return reads


def test_agent_configs_are_read_once_per_organization(db: Engram) -> None:
    """Adds and searches naming many agents, few of them configured: one read of the
    organization's configurations serves them all, and a change applies at once."""
    db.agents.set_config("bot-3", top_k=1)
    reads = _count_config_reads(db)
    for i in range(12):
        db.memories.add(f"note {i} about the weather", agent_id=f"bot-{i % 6}")
    assert [len(db.memories.search("weather", agent_id=f"bot-{i}")) for i in range(6)] == [
        2, 2, 2, 1, 2, 2,
    ]  # fmt: skip
    assert reads == ["all"]
    db.agents.set_config("bot-4", top_k=1)
    assert len(db.memories.search("weather", agent_id="bot-4")) == 1
    db.agents.reset_config("bot-3")
    assert len(db.memories.search("weather", agent_id="bot-3")) == 2


def test_agent_configs_past_the_snapshot_size_are_read_one_by_one(
    db: Engram, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engramdb.service import people

    monkeypatch.setattr(people, "SNAPSHOT_MAX_AGENTS", 1)
    db.agents.set_config("bot-1", top_k=1)
    db.agents.set_config("bot-2", top_k=3)
    for i in range(4):
        db.memories.add(f"note {i} about the weather", agent_id="bot-1")
        db.memories.add(f"note {i} about the weather", agent_id="bot-2")
    reads = _count_config_reads(db)
    db.engine.config_snapshots.clear()  # a new period
    db.engine.config_cache.clear()
    assert len(db.memories.search("weather", agent_id="bot-1")) == 1
    assert len(db.memories.search("weather", agent_id="bot-2")) == 3
    assert len(db.memories.search("weather", agent_id="bot-1")) == 1
    assert reads == ["all", "bot-1", "bot-2"]  # too many to hold: per agent, then remembered
