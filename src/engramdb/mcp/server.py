"""The MCP server: remember, recall, list, get, update, forget and history as MCP tools.

Tools call the same ``db.memories`` methods as the library, in a worker thread so the MCP event
loop keeps serving. An engramdb error comes back as a tool error carrying its stable code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from ..api import Engram
from ..errors import EngramError
from ..models import Memory

__all__ = ["build_server"]

T = TypeVar("T")

INSTRUCTIONS = (
    "Long-term memory for this agent. Call `remember` to store facts, preferences, events and "
    "decisions worth keeping; call `recall` with a natural-language question before answering "
    "anything that may depend on what was said or learned before."
)


def _memory(m: Memory) -> dict[str, Any]:
    return m.model_dump(
        mode="json",
        include={"id", "kind", "content", "agent_id", "user_id", "room_id", "tags", "metadata",
                 "importance", "version", "valid_from", "valid_to", "created_at", "updated_at"},
    )  # fmt: skip


async def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except EngramError as exc:
        # ToolError: an anticipated failure whose message the calling model gets to read.
        raise ToolError(f"[{exc.code}] {exc.message}") from None


def build_server(
    db: Engram, *, agent_id: str | None = None, user_id: str | None = None
) -> MCPServer:
    """An MCP server over ``db``; ``agent_id`` / ``user_id`` are the default scope of every tool."""
    server = MCPServer(name="engramdb", instructions=INSTRUCTIONS)
    memories = db.memories

    def scope(agent: str | None, user: str | None) -> dict[str, str | None]:
        return {"agent_id": agent or agent_id, "user_id": user or user_id}

    @server.tool(description="Store a memory (a fact, preference, event or decision).")
    async def remember(
        content: str,
        kind: str = "semantic",
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float | None = None,
        room_id: str | None = None,
        agent_id: str | None = None,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        m = await _call(
            memories.add, content, kind=kind, tags=tags, metadata=metadata,
            importance=importance, room_id=room_id, **scope(agent_id, user_id),
        )  # fmt: skip
        return _memory(m)

    @server.tool(description="Recall memories relevant to a question, best first (score 0-1).")
    async def recall(
        query: str,
        top_k: int = 5,
        mode: str = "hybrid",
        kind: str | None = None,
        tags: list[str] | None = None,
        room_id: str | None = None,
        agent_id: str | None = None,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        hits = await _call(
            memories.search, query, top_k=top_k, mode=mode, kind=kind, tags=tags,
            room_id=room_id, **scope(agent_id, user_id),
        )  # fmt: skip
        return {"results": [{"score": round(h.score, 4), **_memory(h.memory)} for h in hits]}

    @server.tool(description="List memories, newest first; pass next_cursor to continue.")
    async def list_memories(
        limit: int = 20,
        cursor: str | None = None,
        kind: str | None = None,
        agent_id: str | None = None,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        page = await _call(
            memories.list, limit=limit, cursor=cursor, kind=kind, **scope(agent_id, user_id)
        )
        return {"items": [_memory(m) for m in page.items], "next_cursor": page.next_cursor}

    @server.tool(description="Get one memory by id.")
    async def get_memory(id: str) -> dict[str, Any]:
        return _memory(await _call(memories.get, id))

    @server.tool(description="Change a memory; the previous version is kept in its history.")
    async def update_memory(
        id: str,
        content: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float | None = None,
    ) -> dict[str, Any]:
        changes = {
            k: v for k, v in
            (("tags", tags), ("metadata", metadata), ("importance", importance))
            if v is not None
        }  # fmt: skip
        return _memory(await _call(memories.update, id, content=content, **changes))

    @server.tool(description="Forget a memory: hidden at once; purge=true deletes it for good.")
    async def forget(id: str, purge: bool = False) -> dict[str, Any]:
        await _call(memories.delete, id, purge=purge)
        return {"id": id, "deleted": True, "purged": purge}

    @server.tool(description="Every version of a memory, oldest first.")
    async def memory_history(id: str) -> dict[str, Any]:
        versions = await _call(memories.history, id)
        return {
            "versions": [
                {"version": v.version, "event": v.event, "changed_at": v.changed_at.isoformat(),
                 "content": v.memory.content}
                for v in versions
            ]
        }  # fmt: skip

    return server
