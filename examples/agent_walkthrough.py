"""One agent, one conversation, every part of engramdb's data model, then recall across them.

    python examples/agent_walkthrough.py                      # the embedded PostgreSQL
    python examples/agent_walkthrough.py sqlite://:memory:    # or any engramdb URL
    python examples/agent_walkthrough.py http://localhost:8000   # a server (ENGRAMDB_API_KEY)

A travel agent talks with Alice in a room; it keeps core memory blocks about her and itself,
stores what happened (episodic) and what it learned (semantic), works towards a goal, makes a
decision and records how it went. When Alice changes her mind, the old fact is superseded, not
overwritten. At the end the agent recalls across all of it, as it would to build its prompt.

The ids are fixed, so a run first removes what an earlier run left (purging an agent takes its
room, messages, memories, goals and decisions with it; blocks are shared, so they go one by one).
"""

from __future__ import annotations

import contextlib
import sys
from datetime import UTC, datetime

import engramdb

AGENT, USER, ROOM = "walkthrough-travel-bot", "walkthrough-alice", "walkthrough-lisbon"

CONVERSATION = [
    ("user", "Hi! I'm Alice. I need to get to Lisbon for a conference on May 12."),
    ("assistant", "Happy to help, Alice. Any preferences for the flight?"),
    ("user", "A window seat, please. And I'm vegetarian, if meals matter."),
    ("assistant", "Noted: window seat, vegetarian meals. I found three morning flights."),
    ("user", "The 7:05 TAP flight sounds good."),
]


def start_fresh(db: engramdb.Engram) -> None:
    """Remove what an earlier run of this walkthrough left behind."""
    for block in db.blocks.for_agent(AGENT):
        db.blocks.delete(block.id, purge=True)
    with contextlib.suppress(engramdb.NotFound):  # nothing to remove: a first run
        db.agents.delete(AGENT, purge=True)
    with contextlib.suppress(engramdb.NotFound):
        db.users.delete(USER, purge=True)


def walk(db: engramdb.Engram) -> None:
    start_fresh(db)

    # Who takes part, and where.
    db.agents.add(AGENT, name="Travel bot", agent_type="assistant", topic="travel",
                  system_prompt="You book trips. Be brief.")  # fmt: skip
    db.agents.set_config(AGENT, top_k=5, recency_weight=0.1)  # used by search from now on
    db.users.add(USER, name="Alice", timezone="Europe/Lisbon")
    db.rooms.add(ROOM, name="Lisbon trip", agent_id=AGENT)
    db.rooms.join(ROOM, user_id=USER)
    db.rooms.join(ROOM, agent_id=AGENT)

    # Core memory: what the agent always sees.
    db.blocks.add("persona", "I am a travel assistant. I book flights and hotels.",
                  agent_id=AGENT, description="who I am")  # fmt: skip
    human = db.blocks.add("human", "Name: Alice", agent_id=AGENT, limit=300,
                          description="what I know about the user")  # fmt: skip

    # The conversation; every message is recallable.
    for role, text in CONVERSATION:
        db.messages.add(role, text, room_id=ROOM, agent_id=AGENT,
                        user_id=USER if role == "user" else None)  # fmt: skip

    # What the agent learned (semantic) and what happened (episodic).
    db.blocks.append(human.id, "Vegetarian. Prefers window seats.")
    seat = db.memories.add("Alice prefers window seats", kind="semantic", agent_id=AGENT,
                           user_id=USER, data={"concept": "seat preference", "source": "chat",
                                               "confidence": 0.9})  # fmt: skip
    db.memories.add("Alice is vegetarian", kind="semantic", agent_id=AGENT, user_id=USER,
                    data={"concept": "diet", "source": "chat", "confidence": 1.0})  # fmt: skip
    db.memories.add("Searched flights to Lisbon for May 12: three morning options",
                    kind="episodic", agent_id=AGENT, user_id=USER, room_id=ROOM,
                    importance="medium", data={"event_type": "task_complete",
                                               "summary": "flight search"})  # fmt: skip

    # A goal, and a decision towards it.
    goal = db.goals.add("Get Alice to Lisbon", objectives=["book a flight", "book a hotel"],
                        agent_id=AGENT, user_id=USER, room_id=ROOM)  # fmt: skip
    decision = db.decisions.record(
        "choose a flight to Lisbon", "TAP 7:05", alternatives=["easyJet 9:40", "Ryanair 6:15"],
        reasoning="Alice picked it; a window seat was free", agent_id=AGENT, user_id=USER,
        room_id=ROOM, importance="high",
    )  # fmt: skip
    db.goals.set_objective(goal.id, "book a flight")

    # Alice changes her mind: the fact is superseded, the block edited; both keep their past.
    before_change = datetime.now(UTC)
    db.messages.add("user", "Actually, make it an aisle seat from now on.", room_id=ROOM,
                    agent_id=AGENT, user_id=USER)  # fmt: skip
    db.memories.supersede(seat.id, "Alice prefers aisle seats")
    db.blocks.str_replace(human.id, "window", "aisle")

    # The trip went well.
    db.decisions.resolve(decision.id, "success", lessons_learned="book the 7:05 again",
                         user_feedback="positive")  # fmt: skip

    # Recall across all of it, as the agent would before answering.
    print("== core memory (prompt text)")
    print(db.blocks.render(AGENT))
    print("== where does Alice like to sit? (now)")
    for hit in db.memories.search("Alice seats", agent_id=AGENT, kind="semantic")[:1]:
        print(f"  {hit.memory.content}  [score {hit.score:.2f}]")
    print("== where did Alice like to sit? (as of before the change)")
    for hit in db.memories.search("Alice seats", agent_id=AGENT, kind="semantic",
                                  as_of=before_change)[:1]:  # fmt: skip
        print(f"  {hit.memory.content}")
    print("== what happened on this trip (episodic)")
    for m in db.memories.list(agent_id=AGENT, kind="episodic").items:
        print(f"  [{m.data.get('event_type')}] {m.content}")
    print("== what was said about food")
    for mh in db.messages.search("vegetarian meals", room_id=ROOM)[:2]:
        print(f"  {mh.message.role}: {mh.message.text}")
    state = db.goals.get(goal.id)
    done = [o.description for o in state.objectives if o.completed]
    print(f"== goal: {state.name} ({state.status}); done: {', '.join(done)}")
    [summary] = db.decisions.summary(agent_id=AGENT)
    print(f"== decisions: {summary.total}, success rate {summary.success_rate:.0%}")
    print(f"== the block's history: {[v.event for v in db.blocks.history(human.id)]}")


def main(argv: list[str]) -> None:
    url = argv[1] if len(argv) > 1 else None
    with engramdb.connect(url) as db:
        walk(db)


if __name__ == "__main__":
    main(sys.argv)
