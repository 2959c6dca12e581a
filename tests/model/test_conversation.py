"""Rooms, participants, messages (ordered, paginated, searchable) and logs, on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import engramdb
from engramdb import Engram


def test_rooms_and_participants(db: Engram) -> None:
    room = db.rooms.add("trip-42", name="Trip planning", agent_id="travel-bot")
    assert room.agent_id == "travel-bot" and db.agents.get("travel-bot").id == "travel-bot"
    p = db.rooms.join("trip-42", user_id="alice", state="FOLLOWED")
    db.rooms.join("trip-42", agent_id="travel-bot")
    assert p.state == "FOLLOWED" and p.joined_at is not None
    members = db.rooms.participants("trip-42").items
    assert [(m.user_id, m.agent_id) for m in members] == [("alice", None), (None, "travel-bot")]
    with pytest.raises(engramdb.Conflict):
        db.rooms.join("trip-42", user_id="alice")
    with pytest.raises(engramdb.InvalidInput):
        db.rooms.join("trip-42", user_id="alice", agent_id="travel-bot")
    with pytest.raises(engramdb.InvalidInput):
        db.rooms.join("trip-42")
    assert db.rooms.set_state("trip-42", "MUTED", user_id="alice").state == "MUTED"
    assert [m.room_id for m in db.rooms.rooms_of(user_id="alice").items] == ["trip-42"]
    db.rooms.leave("trip-42", user_id="alice")
    assert [m.agent_id for m in db.rooms.participants("trip-42").items] == ["travel-bot"]
    with pytest.raises(engramdb.NotFound):
        db.rooms.leave("trip-42", user_id="alice")
    db.rooms.join("trip-42", user_id="alice")  # rejoin after leaving
    assert len(db.rooms.participants("trip-42").items) == 2


def test_messages_ordered_paginated_with_all_fields(db: Engram) -> None:
    t0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    db.messages.add_many(
        [
            {"role": "user", "text": "Book me a flight to Lisbon", "room_id": "r1",
             "user_id": "alice", "agent_id": "bot", "created_at": t0},
            {"role": "assistant", "text": None, "room_id": "r1", "agent_id": "bot",
             "tool_calls": [{"id": "c1", "name": "search_flights", "arguments": {"to": "LIS"}}],
             "model": "gpt-x", "step_id": "s1", "created_at": t0 + timedelta(seconds=5)},
            {"role": "tool", "text": "3 flights found", "room_id": "r1", "agent_id": "bot",
             "tool_call_id": "c1", "name": "search_flights", "created_at": t0 + timedelta(seconds=6)},
            {"role": "assistant", "text": "I found three flights to Lisbon.", "room_id": "r1",
             "agent_id": "bot", "content": [{"type": "text", "text": "I found three"}],
             "group_id": "g", "sender_id": "bot", "created_at": t0 + timedelta(seconds=7)},
        ]
    )  # fmt: skip
    # added out of order: listing still follows created_at
    db.messages.add("system", "You are a travel agent.", room_id="r1", agent_id="bot",
                    created_at=t0 - timedelta(minutes=1))  # fmt: skip
    msgs = db.messages.list(room_id="r1").items
    assert [m.role for m in msgs] == ["system", "user", "assistant", "tool", "assistant"]
    call = msgs[2]
    assert (
        call.text is None
        and call.memory_id is None
        and call.tool_calls[0]["name"] == "search_flights"
    )
    assert msgs[3].tool_call_id == "c1" and msgs[4].content == [
        {"type": "text", "text": "I found three"}
    ]
    assert msgs[1].memory_id is not None and msgs[1].user_id == "alice"
    newest = db.messages.list(room_id="r1", newest_first=True, limit=2)
    assert [m.role for m in newest.items] == ["assistant", "tool"]
    rest = db.messages.list(room_id="r1", newest_first=True, limit=10, cursor=newest.next_cursor)
    assert [m.role for m in rest.items] == ["assistant", "user", "system"]
    assert [m.role for m in db.messages.list(room_id="r1", role="tool").items] == ["tool"]
    since = db.messages.list(room_id="r1", since=t0 + timedelta(seconds=6)).items
    assert [m.role for m in since] == ["tool", "assistant"]


def test_messages_are_searchable(db: Engram) -> None:
    db.messages.add("user", "My passport expires in March", room_id="r1", agent_id="bot")
    db.messages.add("user", "I love spicy ramen", room_id="r2", agent_id="bot")
    db.messages.add("assistant", "Noted: your passport expires soon", room_id="r1", agent_id="bot")
    hits = db.messages.search("passport", room_id="r1", mode="text")
    assert {h.message.text for h in hits} == {
        "My passport expires in March",
        "Noted: your passport expires soon",
    }
    assert all(0 <= h.score <= 1 for h in hits)
    assert [h.message.role for h in db.messages.search("passport", role="user", mode="text")] == [
        "user"
    ]
    assert db.messages.search("ramen", room_id="r1", mode="text") == []
    assert db.messages.search("spicy ramen", agent_id="bot")[0].message.room_id == "r2"
    # messages are memories of kind "message": ordinary memory search does not mix them in
    # unless asked
    assert db.memories.search("ramen", mode="text", kind="message")[0].memory.kind == "message"


def test_message_update_and_delete_follow_the_memory(db: Engram) -> None:
    m = db.messages.add("user", "I live in Paris", room_id="r1", agent_id="bot")
    m2 = db.messages.update(m.id, text="I live in Rome")
    assert m2.text == "I live in Rome"
    assert db.memories.get(m.memory_id).content == "I live in Rome"  # type: ignore[arg-type]
    assert [h.message.id for h in db.messages.search("Rome", mode="text")] == [m.id]
    assert db.messages.search("Paris", mode="text") == []
    db.messages.delete(m.id)
    with pytest.raises(engramdb.NotFound):
        db.messages.get(m.id)
    assert db.messages.get(m.id, include_deleted=True).deleted_at is not None
    assert db.messages.search("Rome", mode="text") == []
    db.messages.delete(m.id, purge=True)
    with pytest.raises(engramdb.NotFound):
        db.messages.get(m.id, include_deleted=True)
    with pytest.raises(engramdb.NotFound):
        db.memories.get(m.memory_id, include_deleted=True)  # type: ignore[arg-type]


def test_message_bad_input_writes_nothing(db: Engram) -> None:
    bad = [
        {"role": "robot", "text": "hi", "room_id": "r"},
        {"role": "user", "text": "hi"},  # neither room nor agent
        {"role": "user", "text": "hi", "room_id": "bad room"},
        {"role": "user", "text": "hi", "room_id": "r", "colour": "red"},
        {"role": "user", "text": "hi", "room_id": "r", "tool_calls": "nope"},
    ]
    for item in bad:
        with pytest.raises(engramdb.InvalidInput):
            db.messages.add_many([{"role": "user", "text": "ok", "room_id": "r"}, item])
    with pytest.raises(engramdb.LimitExceeded):
        db.messages.add("user", "x" * 40_000, room_id="r")
    assert db.messages.list(room_id="r").items == []
    assert db.memories.list(kind="message").items == []
    with pytest.raises(engramdb.InvalidInput):
        db.messages.get("not-a-uuid")
    with pytest.raises(engramdb.InvalidInput):
        db.messages.update(db.messages.add("user", "x", room_id="r").id, role="system")


def test_logs(db: Engram) -> None:
    db.logs.add("action", {"tool": "search"}, agent_id="bot", room_id="r1", user_id="alice")
    db.logs.add("error", {"message": "timeout"}, agent_id="bot", room_id="r1")
    db.logs.add("action", {"tool": "book"}, agent_id="bot", room_id="r2")
    assert [lg.body["tool"] for lg in db.logs.list(room_id="r1", type="action").items] == ["search"]
    assert [lg.type for lg in db.logs.list(agent_id="bot").items] == ["action", "error", "action"][
        ::-1
    ]
    assert len(db.logs.list(user_id="alice").items) == 1
    with pytest.raises(engramdb.InvalidInput):
        db.logs.add("", {})
    with pytest.raises(engramdb.InvalidInput):
        db.logs.add("x", {}, room_id="bad room")
    assert len(db.logs.list(agent_id="bot").items) == 3
