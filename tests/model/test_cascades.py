"""What deleting takes with it: soft deletes hide, purges cascade (the rules in
docs/data-model.md), and a purged organization leaves nothing behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

import engramdb
from engramdb import Engram
from tests.conftest import open_backend


def _agent_world(db: Engram) -> dict[str, Any]:
    """An agent ``bot`` with something of every kind, next to things that are not its own."""
    db.agents.set_config("bot", top_k=3)
    db.rooms.add("bot-room", agent_id="bot")  # the agent's own conversation space
    db.rooms.add("lobby")  # a shared room the agent only takes part in
    db.rooms.join("lobby", agent_id="bot")
    db.rooms.join("lobby", user_id="alice")
    out: dict[str, Any] = {
        "own_room_msg": db.messages.add("user", "hi bot, in your room", room_id="bot-room",
                                        user_id="alice"),
        "bot_lobby_msg": db.messages.add("assistant", "hello lobby", room_id="lobby",
                                         agent_id="bot"),
        "alice_lobby_msg": db.messages.add("user", "hello everyone", room_id="lobby",
                                           user_id="alice"),
        "bot_memory": db.memories.add("alice likes tea", agent_id="bot", user_id="alice"),
        "alice_memory": db.memories.add("alice lives in Lisbon", user_id="alice"),
        "shared_block": db.blocks.add("human", "Alice", agent_id="bot"),
        "tool": db.tools.add("search", agent_id="bot"),
        "goal": db.goals.add("help alice", agent_id="bot"),
        "decision": db.decisions.record("greet", "say hi", agent_id="bot"),
        "session": db.sessions.start(agent_id="bot"),
        "workflow": db.workflows.add("w", {"nodes": []}, agent_id="bot"),
        "log": db.logs.add("action", {"x": 1}, agent_id="bot"),
        "alice_log": db.logs.add("action", {"x": 2}, user_id="alice", room_id="lobby"),
        "rel": db.relationships.add("alice", "bot", kind="client"),
        "alice_rel": db.relationships.add("alice", "bob", target_type="user", kind="friend"),
    }  # fmt: skip
    db.blocks.attach(out["shared_block"].id, "other-bot")
    db.tools.attach(out["tool"].id, "other-bot")
    out["run"] = db.workflows.start(out["workflow"].id)
    db.memories.link(out["bot_memory"].id, out["alice_memory"].id, "about")
    return out


def test_soft_deleting_an_agent_hides_only_the_agent(db: Engram) -> None:
    w = _agent_world(db)
    db.agents.delete("bot")
    with pytest.raises(engramdb.NotFound):
        db.agents.get("bot")
    assert "bot" not in [a.id for a in db.agents.list().items]
    assert db.agents.get("bot", include_deleted=True).deleted_at is not None
    # what belongs to it is kept as it was, and comes back with the agent
    assert db.memories.get(w["bot_memory"].id).agent_id == "bot"
    assert [b.id for b in db.blocks.for_agent("bot")] == [w["shared_block"].id]
    assert db.goals.get(w["goal"].id).agent_id == "bot"
    restored = db.agents.add("bot")
    assert restored.deleted_at is None and db.agents.config("bot").top_k == 3


def test_purging_an_agent_cascades(db: Engram) -> None:
    w = _agent_world(db)
    db.agents.delete("bot", purge=True)
    with pytest.raises(engramdb.NotFound):
        db.agents.get("bot", include_deleted=True)
    gone = [
        lambda: db.rooms.get("bot-room", include_deleted=True),  # its own room, and all in it
        lambda: db.messages.get(w["own_room_msg"].id, include_deleted=True),
        lambda: db.messages.get(w["bot_lobby_msg"].id, include_deleted=True),
        lambda: db.memories.get(w["bot_memory"].id, include_deleted=True),
        lambda: db.memories.get(w["decision"].memory_id, include_deleted=True),
        lambda: db.goals.get(w["goal"].id, include_deleted=True),
        lambda: db.decisions.get(w["decision"].id),
        lambda: db.sessions.get(w["session"].id),
        lambda: db.workflows.get(w["workflow"].id),
        lambda: db.workflows.execution(w["run"].id),
        lambda: db.logs.get(w["log"].id),
        lambda: db.relationships.get(w["rel"].id),
    ]
    for read in gone:
        with pytest.raises(engramdb.NotFound):
            read()
    assert db.agents.config("bot").top_k is None  # its configuration went too
    # shared things stay, only the agent's links to them go
    assert db.blocks.get(w["shared_block"].id).value == "Alice"
    assert db.blocks.agents(w["shared_block"].id) == ["other-bot"]
    assert db.blocks.for_agent("bot") == []
    assert db.tools.get(w["tool"].id).name == "search"
    assert db.tools.for_agent("bot") == [] and len(db.tools.for_agent("other-bot")) == 1
    # and what is not the agent's is untouched
    assert db.rooms.get("lobby").id == "lobby"
    assert [p.user_id for p in db.rooms.participants("lobby").items] == ["alice"]
    assert db.messages.get(w["alice_lobby_msg"].id).text == "hello everyone"
    assert db.memories.get(w["alice_memory"].id).content == "alice lives in Lisbon"
    assert db.memories.links(w["alice_memory"].id) == []  # the link from its memory went
    assert db.logs.get(w["alice_log"].id).user_id == "alice"
    assert [r.id for r in db.relationships.list(user_id="alice").items] == [w["alice_rel"].id]
    assert db.users.get("alice").id == "alice"
    assert db.messages.search("hello", mode="text", room_id="lobby")[0].message.user_id == "alice"


def test_purging_a_room_or_user_cascades(db: Engram) -> None:
    w = _agent_world(db)
    db.rooms.delete("lobby", purge=True)
    for read in (
        lambda: db.messages.get(w["alice_lobby_msg"].id, include_deleted=True),
        lambda: db.logs.get(w["alice_log"].id),
    ):
        with pytest.raises(engramdb.NotFound):
            read()
    assert db.rooms.rooms_of(agent_id="bot").items == []
    db.users.delete("alice", purge=True)
    for read in (
        lambda: db.memories.get(w["alice_memory"].id, include_deleted=True),
        lambda: db.messages.get(w["own_room_msg"].id, include_deleted=True),
        lambda: db.relationships.get(w["rel"].id),
    ):
        with pytest.raises(engramdb.NotFound):
            read()
    assert db.agents.get("bot").id == "bot" and db.goals.get(w["goal"].id).agent_id == "bot"


def test_soft_deletes_hide_rows(db: Engram) -> None:
    w = _agent_world(db)
    cases = [
        (db.tools, w["tool"].id, lambda: db.tools.list().items),
        (db.goals, w["goal"].id, lambda: db.goals.list().items),
        (db.sessions, w["session"].id, lambda: db.sessions.list().items),
        (db.workflows, w["workflow"].id, lambda: db.workflows.list().items),
        (db.logs, w["log"].id, lambda: db.logs.list(agent_id="bot").items),
        (db.relationships, w["rel"].id, lambda: db.relationships.list(agent_id="bot").items),
        (db.messages, w["bot_lobby_msg"].id, lambda: db.messages.list(room_id="lobby").items),
    ]
    for service, ident, listing in cases:
        assert ident in [x.id for x in listing()]
        service.delete(ident)
        with pytest.raises(engramdb.NotFound):
            service.get(ident)
        assert ident not in [x.id for x in listing()], service
    assert db.tools.for_agent("bot") == []
    assert db.workflows.execution(w["run"].id).status == "running"  # soft: the run is kept
    db.rooms.delete("lobby")
    with pytest.raises(engramdb.NotFound):
        db.rooms.get("lobby")
    assert db.rooms.get("lobby", include_deleted=True).deleted_at is not None
    for service, ident in ((db.tools, w["tool"].id), (db.goals, w["goal"].id)):
        with pytest.raises(engramdb.NotFound):
            service.delete(ident)  # deleting twice: it is not there any more


# -- organizations -------------------------------------------------------------------------------


def _tenant_tables(backend: str, where: str | Path) -> dict[str, int]:
    """Rows per organization across every table with an ``organization_id`` column."""
    if backend == "postgres":
        with psycopg.connect(str(where), autocommit=True) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.columns WHERE column_name = "
                "'organization_id' AND table_schema = 'public'"
            )]  # fmt: skip
            counts: dict[str, int] = {}
            for t in tables:
                for org, n in conn.execute(
                    f'SELECT organization_id, count(*) FROM "{t}" GROUP BY 1'
                ):
                    counts[f"{t}:{org}"] = n
            return counts
    import sqlite3

    conn = sqlite3.connect(where)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT m.name FROM sqlite_master m JOIN pragma_table_info(m.name) c "
            "WHERE m.type = 'table' AND c.name = 'organization_id'"
        )]  # fmt: skip
        counts = {}
        for t in tables:
            for org, n in conn.execute(f'SELECT organization_id, count(*) FROM "{t}" GROUP BY 1'):
                counts[f"{t}:{org}"] = n
        return counts
    finally:
        conn.close()


def _purge_organization(backend: str, where: str | Path, org: str) -> None:
    # The statement Organizations.delete(org, purge=True) runs (the verb itself is tested in
    # tests/test_organizations_purge.py): every tenant table follows it by ON DELETE CASCADE.
    if backend == "postgres":
        with psycopg.connect(str(where), autocommit=True) as conn:
            conn.execute("DELETE FROM organizations WHERE id = %s", (org,))
        return
    import sqlite3

    conn = sqlite3.connect(where)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("DELETE FROM organizations WHERE id = ?", (org,))
        conn.commit()
    finally:
        conn.close()


@pytest.mark.parametrize("store_backend", ["postgres", "sqlite"])
def test_purging_an_organization_leaves_nothing_behind(
    store_backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    home = open_backend(store_backend, request, tmp_path)
    where: str | Path = (
        request.getfixturevalue("pg_url")
        if store_backend == "postgres"
        else tmp_path / "memories.db"
    )
    try:
        acme = home.for_organization("acme")
        _agent_world(acme)
        acme.messages.update(acme.messages.list(room_id="lobby").items[0].id, text="edited")
        acme.blocks.append(acme.blocks.list().items[0].id, "more")  # block history too
        _agent_world(home)
        home.flush()
        before = _tenant_tables(store_backend, where)
        acme_tables = {k.split(":")[0] for k in before if k.endswith(":acme")}
        assert {"memories", "messages", "blocks", "block_history", "agent_blocks", "goals",
                "workflow_executions", "memory_links", "agents", "users", "rooms"} <= acme_tables  # fmt: skip
    finally:
        home.close()
    _purge_organization(store_backend, where, "acme")
    after = _tenant_tables(store_backend, where)
    assert [k for k in after if k.endswith(":acme")] == []
    assert {k: n for k, n in before.items() if k.endswith(":default")} == after
