"""The MCP server, driven by a real MCP client in-process, on each backend."""

from __future__ import annotations

import asyncio
from typing import Any

from mcp import Client

from engramdb import Engram
from engramdb.mcp import build_server


def _call(server: Any, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    async def main() -> list[Any]:
        out = []
        async with Client(server) as client:
            for name, arguments in calls:
                out.append(await client.call_tool(name, arguments))
        return out

    return asyncio.run(main())


def test_remember_recall_update_forget(db: Engram) -> None:
    server = build_server(db, agent_id="assistant", user_id="alice")

    async def tools() -> set[str]:
        async with Client(server) as client:
            return {t.name for t in (await client.list_tools()).tools}

    assert asyncio.run(tools()) == {
        "remember", "recall", "list_memories", "get_memory", "update_memory", "forget",
        "memory_history",
    }  # fmt: skip

    [added] = _call(
        server, [("remember", {"content": "Alice's cat is called Miso", "tags": ["pets"]})]
    )
    assert not added.is_error
    memory = added.structured_content or {}
    mid = memory["id"]
    assert memory["agent_id"] == "assistant" and memory["user_id"] == "alice"
    # the library sees what the tool stored
    assert db.memories.get(mid).tags == ["pets"]

    recalled, updated, history, listed = _call(
        server,
        [
            ("recall", {"query": "what is the cat called?"}),
            ("update_memory", {"id": mid, "content": "Alice's cat is called Miso; he is 3"}),
            ("memory_history", {"id": mid}),
            ("list_memories", {}),
        ],
    )
    results = (recalled.structured_content or {})["results"]
    assert results[0]["id"] == mid and 0.0 <= results[0]["score"] <= 1.0
    assert (updated.structured_content or {})["version"] == 2
    assert [v["event"] for v in (history.structured_content or {})["versions"]] == [
        "update",
        "current",
    ]
    assert [m["id"] for m in (listed.structured_content or {})["items"]] == [mid]

    # another user's scope does not see it
    [other] = _call(server, [("recall", {"query": "cat", "user_id": "bob"})])
    assert (other.structured_content or {})["results"] == []

    [forgot, missing] = _call(server, [("forget", {"id": mid}), ("get_memory", {"id": mid})])
    assert not forgot.is_error
    assert missing.is_error
    assert "[not_found]" in str(missing.content)


def test_bad_input_is_a_tool_error_and_nothing_is_written(db: Engram) -> None:
    server = build_server(db)
    [empty, bad_kind] = _call(
        server,
        [("remember", {"content": "   "}), ("remember", {"content": "x", "kind": "Not Valid"})],
    )
    assert empty.is_error and "[invalid_input]" in str(empty.content)
    assert bad_kind.is_error
    assert db.memories.list().items == []


def test_engramdb_mcp_command_over_stdio(tmp_path: Any) -> None:
    """The real command, launched as an agent host would, over stdio."""
    import os
    import sys

    from mcp import StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "engramdb.cli.main", "mcp", "--agent-id", "helper"],
        env={
            **os.environ,
            "ENGRAMDB_DATABASE_URL": f"sqlite:///{tmp_path / 'mcp.db'}",
            "ENGRAMDB_EMBEDDER": "hash",
        },
    )
    [stored, recalled] = _call(
        params,
        [("remember", {"content": "the deploy key rotates monthly"}),
         ("recall", {"query": "deploy key"})],
    )  # fmt: skip
    assert not stored.is_error, stored.content
    results = (recalled.structured_content or {})["results"]
    assert results[0]["content"] == "the deploy key rotates monthly"
    assert results[0]["agent_id"] == "helper"
