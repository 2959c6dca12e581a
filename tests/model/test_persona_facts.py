"""Facts that change over time, on a real conversation: the CRI persona "Marcus Rivera"
(tests/data/cri-persona-1-base, MIT). The conversation is ingested as messages; each change its
ground truth lists (occupation, city, relationship status, diet, with the message where it
happened) is recorded by superseding the fact. The current value wins by default, ``as_of`` an
earlier moment finds the value of then, and history keeps every version."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from engramdb import Engram, Memory

DATA = Path(__file__).resolve().parents[1] / "data" / "cri-persona-1-base"
ROOM, USER, AGENT = "persona-1", "marcus", "assistant"


def _load() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    lines = (DATA / "conversations.jsonl").read_text(encoding="utf-8").splitlines()
    truth = json.loads((DATA / "ground_truth.json").read_text(encoding="utf-8"))
    return [json.loads(line) for line in lines if line.strip()], truth


def _label(fact: str) -> str:
    return fact.replace("_", " ")


def _question(fact: str) -> str:
    return f"What is Marcus's {_label(fact)}?"


def test_changed_facts_current_by_default_and_past_with_as_of(db: Engram) -> None:
    conversation, truth = _load()
    stored = db.messages.add_many(
        [{"role": m["role"], "text": m["content"], "room_id": ROOM, "user_id": USER,
          "agent_id": AGENT, "created_at": m["timestamp"],
          "metadata": {"message_id": m["message_id"], "session_id": m["session_id"]}}
         for m in conversation]
    )  # fmt: skip
    assert len(stored) == len(conversation) == 126
    said = {m.metadata["message_id"]: m for m in stored}

    # Record the facts as the conversation changed them.
    current: dict[str, Memory] = {}
    first_value: dict[str, str] = {}
    steps: list[tuple[dict[str, Any], Memory, Memory]] = []
    for change in sorted(truth["changes"], key=lambda c: c["changed_around_msg"]):
        fact, where = change["fact"], said[change["changed_around_msg"]]
        if fact not in current:
            first_value[fact] = change["old_value"]
            current[fact] = db.memories.add(
                f"Marcus's {_label(fact)}: {change['old_value']}", kind="semantic",
                user_id=USER, agent_id=AGENT, data={"concept": fact, "source": "conversation"},
            )  # fmt: skip
        before = current[fact]
        current[fact] = db.memories.supersede(
            before.id, f"Marcus's {_label(fact)}: {change['new_value']}",
            valid_from=where.created_at,
            data={"concept": fact, "source": f"message {change['changed_around_msg']}"},
        )  # fmt: skip
        steps.append((change, before, current[fact]))
    assert set(current) == {"occupation", "city", "relationship_status", "diet"}

    # Now: the latest value of each fact wins, and no superseded value is returned at all.
    profile = truth["final_profile"]
    finals = {
        "occupation": profile["occupation"]["value"],
        "city": profile["city"]["value"],
        "diet": profile["diet"]["value"],
        "relationship_status": profile["family_status"]["value"],
    }
    superseded = {before.id for _, before, _ in steps}
    for fact, memory in current.items():
        value = memory.content.split(": ", 1)[1]
        assert value in finals[fact], (fact, value)
        hits = db.memories.search(_question(fact), user_id=USER, kind="semantic")
        assert hits[0].memory.id == memory.id, (fact, [h.memory.content for h in hits])
        assert not {h.memory.id for h in hits} & superseded

    # Before each change, the value of then; just after it, the new one.
    for change, before, after in steps:
        moment = after.valid_from
        assert moment is not None and moment == said[change["changed_around_msg"]].created_at
        then = db.memories.search(_question(change["fact"]), user_id=USER, kind="semantic",
                                  as_of=moment - timedelta(days=1))  # fmt: skip
        assert then[0].memory.id == before.id, (change["fact"], then[0].memory.content)
        assert after.id not in {h.memory.id for h in then}
        later = db.memories.search(_question(change["fact"]), user_id=USER, kind="semantic",
                                   as_of=moment + timedelta(minutes=1))  # fmt: skip
        assert later[0].memory.id == after.id
        # history keeps both, linked
        assert db.memories.get(before.id).valid_to == moment
        assert [e.event for e in db.memories.history(before.id)] == ["supersede", "current"]
        assert [
            m.id for m in db.memories.related(after.id, kind="supersedes", direction="out")
        ] == [before.id]

    # At the start of the conversation, the facts as they first were.
    start = said[conversation[0]["message_id"]].created_at
    at_start = db.memories.list(user_id=USER, kind="semantic", as_of=start).items
    assert {m.content.split(": ", 1)[1] for m in at_start} == set(first_value.values())
    every = db.memories.list(user_id=USER, kind="semantic", filters={"data.concept": "city"},
                             as_of=None, include_expired=True).items  # fmt: skip
    assert len(db.memories.list(user_id=USER, kind="semantic", limit=100).items) == 4
    assert len(every) == 1  # listing, like search, is "valid now" unless as_of says otherwise

    # The messages that carried the changes are in the conversation, recallable.
    for change in truth["changes"]:
        message = said[change["changed_around_msg"]]
        assert message.role == "user" and message.text
        found = db.messages.search(message.text, room_id=ROOM, mode="text", top_k=3)
        assert found[0].message.id == message.id
