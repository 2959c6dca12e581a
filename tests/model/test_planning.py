"""Goals, relationships, decisions and their outcomes, sessions and workflows, on every backend."""

from __future__ import annotations

import pytest

import engramdb
from engramdb import Engram


def test_goals_and_objectives(db: Engram) -> None:
    g = db.goals.add(
        "Plan the Lisbon trip", objectives=["book flight", {"description": "book hotel"}],
        agent_id="travel-bot", user_id="alice", room_id="trip-42", description="in May",
    )  # fmt: skip
    assert g.status == "in_progress" and [o.completed for o in g.objectives] == [False, False]
    assert db.rooms.get("trip-42").id == "trip-42"  # registered on first use
    g = db.goals.set_objective(g.id, 0)
    assert [o.completed for o in g.objectives] == [True, False] and g.status == "in_progress"
    g = db.goals.set_objective(g.id, "book hotel", complete_goal=True)
    assert g.status == "done" and g.version == 3
    g = db.goals.set_objective(g.id, "book hotel", completed=False)
    assert g.objectives[1].completed is False
    with pytest.raises(engramdb.NotFound):
        db.goals.set_objective(g.id, 5)
    with pytest.raises(engramdb.NotFound):
        db.goals.set_objective(g.id, "book a car")
    other = db.goals.add("Learn Portuguese", agent_id="travel-bot", status="failed")
    assert [x.id for x in db.goals.list(agent_id="travel-bot").items] == [g.id, other.id]
    assert [x.id for x in db.goals.list(status="failed").items] == [other.id]
    assert [x.id for x in db.goals.list(room_id="trip-42").items] == [g.id]
    updated = db.goals.update(g.id, objectives=["one", "two", "three"], name="Trip")
    assert [o.description for o in updated.objectives] == ["one", "two", "three"]
    db.goals.delete(other.id)
    with pytest.raises(engramdb.NotFound):
        db.goals.get(other.id)
    assert db.goals.get(other.id, include_deleted=True).deleted_at is not None
    assert [x.id for x in db.goals.list(agent_id="travel-bot").items] == [g.id]


def test_goal_bad_input_writes_nothing(db: Engram) -> None:
    for bad in (
        {"status": "maybe"},
        {"objectives": [{"description": ""}]},
        {"objectives": [{"description": "x", "extra": 1}]},
        {"agent_id": "bad id"},
    ):
        with pytest.raises(engramdb.InvalidInput):
            db.goals.add("g", **bad)  # type: ignore[arg-type]
    with pytest.raises(engramdb.InvalidInput):
        db.goals.add("")
    assert db.goals.list().items == []
    g = db.goals.add("g", objectives=["a"])
    with pytest.raises(engramdb.InvalidInput):
        db.goals.update(g.id, status="finished")
    with pytest.raises(engramdb.InvalidInput):
        db.goals.update(g.id, colour="red")
    assert db.goals.get(g.id).status == "in_progress" and db.goals.get(g.id).version == 1


def test_relationships_from_either_side(db: Engram) -> None:
    r = db.relationships.add("alice", "travel-bot", kind="client", strength=0.8)
    db.relationships.add("travel-bot", "booking-bot", source_type="agent", target_type="agent",
                         kind="delegates_to")  # fmt: skip
    db.relationships.add("alice", "bob", target_type="user", kind="friend", status="pending")
    assert r.source == ("user", "alice") and r.target == ("agent", "travel-bot")
    assert {x.kind for x in db.relationships.list(user_id="alice").items} == {"client", "friend"}
    assert {x.kind for x in db.relationships.list(agent_id="travel-bot").items} == {
        "client",
        "delegates_to",
    }
    assert [x.kind for x in db.relationships.list(agent_id="travel-bot", direction="in").items] == [
        "client"
    ]
    assert [
        x.kind for x in db.relationships.list(agent_id="travel-bot", direction="out").items
    ] == ["delegates_to"]
    assert [x.kind for x in db.relationships.list(user_id="bob").items] == ["friend"]
    assert [x.kind for x in db.relationships.list(user_id="alice", status="pending").items] == [
        "friend"
    ]
    with pytest.raises(engramdb.Conflict):
        db.relationships.add("alice", "travel-bot", kind="client")
    assert db.relationships.update(r.id, status="ended", strength=0.1).status == "ended"
    for bad in (
        {"source_type": "robot"},
        {"strength": 2.0},
        {"kind": ""},
    ):
        with pytest.raises(engramdb.InvalidInput):
            db.relationships.add("carol", "travel-bot", **bad)  # type: ignore[arg-type]
    with pytest.raises(engramdb.InvalidInput):
        db.relationships.add("alice", "alice", target_type="user")
    with pytest.raises(engramdb.InvalidInput):
        db.relationships.list(user_id="alice", agent_id="travel-bot")
    with pytest.raises(engramdb.InvalidInput):
        db.relationships.list(user_id="alice", direction="sideways")
    assert db.relationships.list(user_id="carol").items == []
    db.relationships.delete(r.id)
    assert {x.kind for x in db.relationships.list(user_id="alice").items} == {"friend"}
    db.relationships.add("alice", "travel-bot", kind="client")  # free again once deleted


def test_decisions_outcomes_and_summary(db: Engram) -> None:
    d = db.decisions.record(
        "pick a hotel for Alice", "Hotel Avenida", alternatives=["Hotel Mar", "Airbnb"],
        reasoning="closest to the venue", agent_id="travel-bot", user_id="alice",
        importance="high", tags=["travel"],
    )  # fmt: skip
    assert d.outcome_status == "pending" and d.resolved_at is None
    mem = db.memories.get(d.memory_id)  # type: ignore[arg-type]
    assert mem.kind == "episodic" and mem.data["event_type"] == "decision"
    assert mem.data["decision"] == "Hotel Avenida" and mem.importance == 0.75
    # the decision is recalled with the agent's other memories
    hits = db.memories.search("hotel venue", agent_id="travel-bot", mode="text")
    assert hits[0].memory.id == d.memory_id
    d = db.decisions.resolve(d.id, "success", outcome_details={"rating": 5},
                             lessons_learned="book early", user_feedback="positive")  # fmt: skip
    assert (d.outcome_status, d.user_feedback, d.outcome_details) == (
        "success",
        "positive",
        {"rating": 5},
    )
    assert d.resolved_at is not None and d.lessons_learned == "book early"
    d2 = db.decisions.record("pick a flight", "TAP 123", agent_id="travel-bot")
    db.decisions.resolve(d2.id, "partial")
    d3 = db.decisions.record("pick a car", "none", agent_id="travel-bot")
    db.decisions.resolve(d3.id, "failure")
    db.decisions.record("pick a tour", "walking tour", agent_id="travel-bot")
    db.decisions.record("answer", "yes", agent_id="other-bot")
    assert db.decisions.feedback(d3.id, "negative").user_feedback == "negative"
    summary = {s.agent_id: s for s in db.decisions.summary()}
    s = summary["travel-bot"]
    assert (s.total, s.pending, s.success, s.partial, s.failure) == (4, 1, 1, 1, 1)
    assert s.success_rate == pytest.approx(0.5)
    assert summary["other-bot"].success_rate is None
    assert [x.agent_id for x in db.decisions.summary(agent_id="other-bot")] == ["other-bot"]
    assert [
        x.id for x in db.decisions.list(agent_id="travel-bot", outcome_status="failure").items
    ] == [d3.id]
    assert [x.id for x in db.decisions.list(memory_id=d.memory_id).items] == [d.id]
    # linking to an existing episodic memory, and refusing anything else
    ep = db.memories.add("chose the early train", kind="episodic", agent_id="travel-bot")
    linked = db.decisions.record("pick a train", "07:10", memory_id=ep.id, agent_id="travel-bot")
    assert linked.memory_id == ep.id
    fact = db.memories.add("Alice likes trains", kind="semantic")
    with pytest.raises(engramdb.InvalidInput):
        db.decisions.record("x", "y", memory_id=fact.id)
    with pytest.raises(engramdb.InvalidInput):
        db.decisions.resolve(d2.id, "great")
    with pytest.raises(engramdb.InvalidInput):
        db.decisions.feedback(d2.id, "meh")
    with pytest.raises(engramdb.InvalidInput):
        db.decisions.record("", "y")
    assert db.decisions.get(d2.id).outcome_status == "partial"
    assert len(db.decisions.list(limit=100).items) == 6


def test_sessions_persist_and_resume(db: Engram) -> None:
    s = db.sessions.start(agent_id="coder", user_id="alice", name="refactor", command="make it so",
                          state={"step": 1})  # fmt: skip
    assert s.status == "running" and s.started_at is not None
    s = db.sessions.update(s.id, state={"step": 2, "files": ["a.py"]})
    s = db.sessions.end(s.id, "interrupted")
    assert s.status == "interrupted" and s.ended_at is not None
    assert [x.id for x in db.sessions.list(agent_id="coder", status="interrupted").items] == [s.id]
    resumed = db.sessions.resume(s.id)
    assert resumed.status == "running" and resumed.ended_at is None
    assert resumed.state == {"step": 2, "files": ["a.py"]}
    done = db.sessions.end(s.id, state={"step": 3})
    assert done.status == "completed" and done.state == {"step": 3}
    with pytest.raises(engramdb.Conflict):
        db.sessions.resume(s.id)
    with pytest.raises(engramdb.InvalidInput):
        db.sessions.end(s.id, "running")
    with pytest.raises(engramdb.InvalidInput):
        db.sessions.update(s.id, status="paused")
    with pytest.raises(engramdb.InvalidInput):
        db.sessions.start(agent_id="bad id")
    assert len(db.sessions.list().items) == 1


def test_workflows_and_executions(db: Engram) -> None:
    graph = {"nodes": ["fetch", "summarise", "send"], "edges": [["fetch", "summarise"],
             ["summarise", "send"]]}  # fmt: skip
    wf = db.workflows.add("daily-digest", graph, agent_id="digest-bot", description="every day")
    assert db.workflows.get(wf.id).graph == graph
    with pytest.raises(engramdb.Conflict):
        db.workflows.add("daily-digest", {}, agent_id="digest-bot")
    db.workflows.add("daily-digest", {}, agent_id="other-bot")  # unique per agent
    session = db.sessions.start(agent_id="digest-bot")
    run = db.workflows.start(wf.id, context={"date": "2026-01-01"}, current_node="fetch",
                             session_id=session.id)  # fmt: skip
    assert (run.status, run.agent_id, run.session_id) == ("running", "digest-bot", session.id)
    run = db.workflows.advance(run.id, "summarise", context={"items": 12})
    assert run.context == {"date": "2026-01-01", "items": 12} and run.current_node == "summarise"
    run = db.workflows.finish(run.id, "interrupted")
    assert run.completed_at is None
    with pytest.raises(engramdb.Conflict):
        db.workflows.advance(run.id, "send")
    todo = db.workflows.executions(agent_id="digest-bot", status="interrupted").items
    assert [x.id for x in todo] == [run.id]
    run = db.workflows.resume(run.id)
    assert (run.status, run.current_node, run.context["items"]) == ("running", "summarise", 12)
    run = db.workflows.advance(run.id, "send", context={"sent": True}, merge=False)
    assert run.context == {"sent": True}
    failed = db.workflows.finish(run.id, "failed", error="SMTP timeout")
    assert (failed.status, failed.error) == ("failed", "SMTP timeout")
    assert failed.completed_at is not None
    with pytest.raises(engramdb.Conflict):
        db.workflows.resume(run.id)
    with pytest.raises(engramdb.InvalidInput):
        db.workflows.finish(run.id, "paused")
    assert db.workflows.execution(run.id).status == "failed"
    assert [x.id for x in db.workflows.executions(workflow_id=wf.id).items] == [run.id]
    assert [x.id for x in db.workflows.executions(session_id=session.id).items] == [run.id]
    assert db.workflows.update(wf.id, status="archived").status == "archived"
    with pytest.raises(engramdb.InvalidInput):
        db.workflows.update(wf.id, status="deleted")
    with pytest.raises(engramdb.InvalidInput):
        db.workflows.add("", {})
    # purging a workflow takes its executions with it
    db.workflows.delete(wf.id, purge=True)
    with pytest.raises(engramdb.NotFound):
        db.workflows.execution(run.id)
    assert db.workflows.executions(agent_id="digest-bot").items == []
