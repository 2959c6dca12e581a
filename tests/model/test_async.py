"""Every resource works through the async face (``AsyncEngram``), on every backend."""

from __future__ import annotations

import asyncio

import pytest

import engramdb
from engramdb import Engram


def test_async_calls_across_resources(db: Engram) -> None:
    async def run() -> None:
        adb = engramdb.AsyncEngram(db)
        assert set(db.RESOURCES) <= set(dir(adb)) | set(vars(adb))
        await adb.rooms.add("r1", agent_id="bot")
        await adb.rooms.join("r1", user_id="alice")
        m = await adb.messages.add("user", "I moved to Austin", room_id="r1", user_id="alice")
        hits = await adb.messages.search("Austin", room_id="r1", mode="text")
        assert [h.message.id for h in hits] == [m.id]
        block = await adb.blocks.add("human", "Alice", agent_id="bot", limit=30)
        block = await adb.blocks.append(block.id, "lives in Austin")
        assert "Austin" in await adb.blocks.render("bot")
        with pytest.raises(engramdb.LimitExceeded):
            await adb.blocks.append(block.id, "x" * 30)
        await adb.tools.add("search", agent_id="bot")
        assert [t.name for t in await adb.tools.for_agent("bot")] == ["search"]
        goal = await adb.goals.add("move", objectives=["pack"], agent_id="bot")
        assert (await adb.goals.set_objective(goal.id, 0, complete_goal=True)).status == "done"
        await adb.relationships.add("alice", "bot")
        assert len((await adb.relationships.list(agent_id="bot")).items) == 1
        d = await adb.decisions.record("where to live", "Austin", agent_id="bot")
        await adb.decisions.resolve(d.id, "success")
        [summary] = await adb.decisions.summary(agent_id="bot")
        assert summary.success_rate == 1.0
        s = await adb.sessions.start(agent_id="bot", state={"step": 1})
        assert (await adb.sessions.end(s.id, "interrupted")).status == "interrupted"
        wf = await adb.workflows.add("w", {"nodes": ["a"]}, agent_id="bot")
        run = await adb.workflows.start(wf.id, current_node="a")
        assert (await adb.workflows.finish(run.id)).status == "completed"
        await adb.logs.add("action", {"tool": "search"}, agent_id="bot")
        assert len((await adb.logs.list(agent_id="bot")).items) == 1
        fact = await adb.memories.add("Alice lives in NYC", user_id="alice")
        new = await adb.memories.supersede(fact.id, "Alice lives in Austin")
        assert [x.id for x in await adb.memories.related(new.id)] == [fact.id]
        cfg = await adb.agents.set_config("bot", top_k=2)
        assert cfg.top_k == 2
        with pytest.raises(engramdb.InvalidInput):
            await adb.goals.add("x", status="sleeping")

    asyncio.run(run())


def test_connect_async_for_the_data_model() -> None:
    async def run() -> None:
        async with engramdb.connect_async("sqlite://:memory:", embedder="hash") as adb:
            b = await adb.blocks.add("persona", "I help.", agent_id="bot")
            assert (await adb.blocks.str_replace(b.id, "help", "assist")).value == "I assist."
            assert [h.event for h in await adb.blocks.history(b.id)] == ["str_replace", "current"]

    asyncio.run(run())
