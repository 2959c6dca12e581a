"""Core memory blocks (limits, edits, history, sharing, rendering) and tools."""

from __future__ import annotations

import pytest

import engramdb
from engramdb import Engram


def test_block_edits_and_history(db: Engram) -> None:
    b = db.blocks.add("human", "Name: Alice", agent_id="bot", limit=60, description="the user")
    b = db.blocks.append(b.id, "Likes window seats")
    assert b.value == "Name: Alice\nLikes window seats" and b.version == 2
    b = db.blocks.str_replace(b.id, "window", "aisle")
    assert b.value == "Name: Alice\nLikes aisle seats"
    b = db.blocks.replace(b.id, "Name: Alice Smith")
    history = db.blocks.history(b.id)
    assert [h.event for h in history] == ["append", "str_replace", "replace", "current"]
    assert [h.snapshot["value"] for h in history] == [
        "Name: Alice", "Name: Alice\nLikes window seats", "Name: Alice\nLikes aisle seats",
        "Name: Alice Smith",
    ]  # fmt: skip
    assert [h.version for h in history] == [1, 2, 3, 4]


def test_block_limit_refuses_and_changes_nothing(db: Engram) -> None:
    b = db.blocks.add("persona", "I am terse.", limit=20)
    for edit in (
        lambda: db.blocks.append(b.id, "x" * 20),
        lambda: db.blocks.replace(b.id, "y" * 21),
        lambda: db.blocks.str_replace(b.id, "terse", "t" * 30),
        lambda: db.blocks.update(b.id, limit=5),
        lambda: db.blocks.update(b.id, value="z" * 21),
    ):
        with pytest.raises(engramdb.LimitExceeded) as info:
            edit()
        assert info.value.details["limit"] in (20, 5)
    got = db.blocks.get(b.id)
    assert (got.value, got.limit, got.version) == ("I am terse.", 20, 1)
    assert [h.event for h in db.blocks.history(b.id)] == ["current"]
    with pytest.raises(engramdb.LimitExceeded):
        db.blocks.add("human", "w" * 30, limit=10)
    assert db.blocks.list(label="human").items == []
    # raising the limit lets the edit through
    db.blocks.update(b.id, limit=100)
    assert db.blocks.append(b.id, "x" * 20).value.endswith("x" * 20)


def test_str_replace_needs_exactly_one_occurrence(db: Engram) -> None:
    b = db.blocks.add("human", "tea, tea")
    with pytest.raises(engramdb.InvalidInput) as info:
        db.blocks.str_replace(b.id, "tea", "coffee")
    assert info.value.details["occurrences"] == 2
    with pytest.raises(engramdb.InvalidInput):
        db.blocks.str_replace(b.id, "milk", "coffee")
    assert db.blocks.get(b.id).value == "tea, tea"


def test_read_only_block(db: Engram) -> None:
    b = db.blocks.add("system", "Never share secrets.", read_only=True)
    with pytest.raises(engramdb.Conflict):
        db.blocks.append(b.id, "ok")
    with pytest.raises(engramdb.Conflict):
        db.blocks.update(b.id, value="changed")
    assert db.blocks.get(b.id).value == "Never share secrets."
    db.blocks.update(b.id, read_only=False)
    assert db.blocks.append(b.id, "Be kind.").value == "Never share secrets.\nBe kind."


def test_shared_blocks_and_render(db: Engram) -> None:
    human = db.blocks.add("human", "Alice, vegetarian", agent_id="planner")
    db.blocks.attach(human.id, "booker")
    db.blocks.add("persona", "I plan trips.", agent_id="planner", description="who I am")
    assert sorted(db.blocks.agents(human.id)) == ["booker", "planner"]
    db.blocks.append(human.id, "allergic to nuts")
    assert db.blocks.for_agent("booker")[0].value == "Alice, vegetarian\nallergic to nuts"
    text = db.blocks.render("planner")
    assert text == (
        '<human characters="34/2000">\nAlice, vegetarian\nallergic to nuts\n</human>\n'
        '<persona characters="13/2000" description="who I am">\nI plan trips.\n</persona>'
    )
    with pytest.raises(engramdb.Conflict):
        db.blocks.add("human", "another", agent_id="planner")  # one block per label per agent
    assert len(db.blocks.list(label="human").items) == 1
    with pytest.raises(engramdb.Conflict):
        db.blocks.attach(human.id, "booker")
    db.blocks.detach(human.id, "booker")
    assert db.blocks.for_agent("booker") == []
    assert db.blocks.render("booker") == ""


def test_block_limits_from_agent_config(db: Engram) -> None:
    db.agents.set_config("bot", block_char_limit=50, max_blocks=2)
    b = db.blocks.add("human", "hi", agent_id="bot")
    assert b.limit == 50
    db.blocks.add("persona", "me", agent_id="bot")
    with pytest.raises(engramdb.LimitExceeded):
        db.blocks.add("system", "x", agent_id="bot")
    assert len(db.blocks.list().items) == 2


def test_block_bad_input(db: Engram) -> None:
    with pytest.raises(engramdb.InvalidInput):
        db.blocks.add("bad label!", "x")
    with pytest.raises(engramdb.InvalidInput):
        db.blocks.add("human", "x", limit=0)
    with pytest.raises(engramdb.InvalidInput):
        db.blocks.add("human", "x", colour="red")
    with pytest.raises(engramdb.InvalidInput):
        db.blocks.append(db.blocks.add("human", "x").id, "")
    assert len(db.blocks.list().items) == 1
    with pytest.raises(engramdb.NotFound):
        db.blocks.append("0190d3f0-0000-7000-8000-000000000000", "x")


def test_block_soft_delete_and_purge(db: Engram) -> None:
    b = db.blocks.add("human", "x", agent_id="bot")
    db.blocks.delete(b.id)
    with pytest.raises(engramdb.NotFound):
        db.blocks.get(b.id)
    assert db.blocks.for_agent("bot") == []
    assert [h.event for h in db.blocks.history(b.id)] == ["delete", "current"]
    db.blocks.delete(b.id, purge=True)
    with pytest.raises(engramdb.NotFound):
        db.blocks.history(b.id)


def test_tools(db: Engram) -> None:
    schema = {"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]}
    t = db.tools.add(
        "search_flights", description="find flights", json_schema=schema, source_type="python",
        source_code="def search_flights(to): ...", tags=["travel"], agent_id="bot",
    )  # fmt: skip
    assert db.tools.get(t.id).json_schema == schema
    assert db.tools.get_by_name("search_flights").id == t.id
    assert [x.name for x in db.tools.for_agent("bot")] == ["search_flights"]
    db.tools.attach(t.id, "other-bot")
    with pytest.raises(engramdb.Conflict):
        db.tools.attach(t.id, "other-bot")
    with pytest.raises(engramdb.Conflict):
        db.tools.add("search_flights")
    with pytest.raises(engramdb.InvalidInput):
        db.tools.add("bad name!")
    with pytest.raises(engramdb.InvalidInput):
        db.tools.add("t2", json_schema="not an object")
    assert len(db.tools.list().items) == 1
    assert db.tools.update(t.id, tags=["travel", "air"]).tags == ["travel", "air"]
    db.tools.detach(t.id, "bot")
    assert db.tools.for_agent("bot") == []
    db.tools.delete(t.id)
    assert db.tools.list().items == []
    db.tools.add("search_flights")  # the name is free again after a delete
