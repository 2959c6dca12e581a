"""Messages: ordered conversation history, each message's text recallable like a memory."""

from __future__ import annotations

import builtins
import contextlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ..errors import InvalidInput, LimitExceeded, NotFound
from ..filters import parse_time
from ..models import Page
from ..models.conversation import Message, MessageHit
from ..store.resources import MESSAGES, ResourceSpec, Where
from .memories import Memories
from .resources import ResourceService, ids_at, scope_where

__all__ = ["Messages"]

_FIELDS = frozenset(
    {"role", "text", "room_id", "agent_id", "user_id", "content", "tool_calls", "tool_call_id",
     "tool_returns", "name", "model", "step_id", "group_id", "sender_id", "otid", "metadata"}
)  # fmt: skip
_EXTRA = frozenset({"created_at", "embedding", "importance", "tags"})
_UPDATABLE = frozenset({"text", "content", "tool_calls", "tool_returns", "name", "metadata"})


class Messages(ResourceService[Message]):
    """``db.messages``: what was said in a room or to an agent, in order, and searchable.

    The text of each message is also stored as a memory of kind ``message`` (``memory_id``), so
    :meth:`search` finds messages by meaning or by words with the memories' hybrid search.
    """

    spec: ResourceSpec[Message] = MESSAGES

    @property
    def _memories(self) -> Memories:
        return Memories(self._engine, self._org, self._actor)

    def add(self, role: str, text: str | None = None, **fields: Any) -> Message:
        """Store one message. ``fields``: ``room_id``, ``agent_id``, ``user_id`` (at least a room
        or an agent), ``content`` (parts), ``tool_calls``, ``tool_call_id``, ``tool_returns``,
        ``name``, ``model``, ``step_id``, ``group_id``, ``sender_id``, ``otid``, ``metadata``,
        ``created_at`` (when it was said), ``embedding``, ``importance`` and ``tags`` (of the
        memory that makes it recallable)."""
        [message] = self.add_many([{"role": role, "text": text, **fields}])
        return message

    def add_many(self, items: Iterable[Mapping[str, Any]]) -> builtins.list[Message]:
        """Store a batch; every item is validated before anything is written."""
        rows: builtins.list[dict[str, Any]] = []
        extras: builtins.list[dict[str, Any]] = []
        for i, item in enumerate(items):
            unknown = set(item) - _FIELDS - _EXTRA
            if unknown:
                raise InvalidInput(
                    f"message {i}: unknown fields {sorted(unknown)}", details={"index": i}
                )
            values = {k: v for k, v in item.items() if k in _FIELDS and v is not None}
            checked = self._check(values, what=f"message {i}")
            if checked.get("room_id") is None and checked.get("agent_id") is None:
                raise InvalidInput(f"message {i}: give a room_id or an agent_id")
            extra = {k: item[k] for k in _EXTRA if item.get(k) is not None}
            if "created_at" in extra:
                extra["created_at"] = parse_time(extra["created_at"], "created_at")
            rows.append(checked)
            extras.append(extra)
        if len(rows) > self._limits.max_batch:
            raise LimitExceeded(f"a batch holds at most {self._limits.max_batch} messages")
        if not rows:
            return []
        for row, extra, mid in zip(
            rows, extras, ids_at([e.get("created_at") for e in extras]), strict=True
        ):
            row["id"] = mid
            if "created_at" in extra:
                row["created_at"] = extra["created_at"]
        memory_items: builtins.list[dict[str, Any]] = []
        holders: builtins.list[dict[str, Any]] = []
        for row, extra in zip(rows, extras, strict=True):
            if row.get("text") and row["text"].strip():
                memory_items.append(self._memory_item(row, extra))
                holders.append(row)
        memories = self._memories.add_many(memory_items) if memory_items else []
        for row, mem in zip(holders, memories, strict=True):
            row["memory_id"] = mem.id
        try:
            out: builtins.list[Message] = self._store.insert_resources(
                self._org, self.spec, rows, actor=self._actor
            )
        except BaseException:
            # The message rows failed: the memories made for them must not stay behind.
            for mem in memories:
                self._memories.delete(mem.id, purge=True)
            raise
        return out

    @staticmethod
    def _memory_item(row: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
        item: dict[str, Any] = {
            "content": row["text"],
            "kind": "message",
            "agent_id": row.get("agent_id"),
            "user_id": row.get("user_id"),
            "room_id": row.get("room_id"),
            "data": {"role": row["role"], "message_id": str(row["id"])},
            # Two identical messages are two messages: no content dedup for this kind.
            "is_unique": False,
        }
        for name in ("created_at", "embedding", "importance", "tags"):
            if name in extra:
                item[name] = extra[name]
        return item

    def get(self, message_id: uuid.UUID | str, *, include_deleted: bool = False) -> Message:
        return self._get(message_id, include_deleted=include_deleted)

    def list(
        self,
        *,
        room_id: str | None = None,
        agent_id: str | None = None,
        user_id: str | None = None,
        role: str | Sequence[str] | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = False,
        include_deleted: bool = False,
    ) -> Page[Message]:
        """In conversation order (oldest first, or ``newest_first``), ``limit`` at a time."""
        where = scope_where(room_id=room_id, agent_id=agent_id, user_id=user_id, role=role)
        if since is not None:
            where.append(Where("created_at", "gte", parse_time(since, "since")))
        if until is not None:
            where.append(Where("created_at", "lt", parse_time(until, "until")))
        return self._page(
            where,
            limit=limit,
            cursor=cursor,
            descending=newest_first,
            include_deleted=include_deleted,
        )

    def update(self, message_id: uuid.UUID | str, **changes: Any) -> Message:
        """Change ``text``, ``content``, ``tool_calls``, ``tool_returns``, ``name`` or
        ``metadata``; new text is re-embedded in the message's memory (kept in its history)."""
        bad = set(changes) - _UPDATABLE
        if bad:
            raise InvalidInput(
                f"cannot update {sorted(bad)}", details={"updatable": sorted(_UPDATABLE)}
            )
        current = self._get(message_id)
        checked = self._check(changes, current)
        text = checked.get("text")
        if "text" in checked and text != current.text:
            if current.memory_id is not None and text and text.strip():
                self._memories.update(current.memory_id, content=text)
            elif current.memory_id is not None:
                self._memories.delete(current.memory_id)
                checked["memory_id"] = None
            elif text and text.strip():
                merged = {**current.model_dump(), **checked}
                [mem] = self._memories.add_many([self._memory_item(merged, {})])
                checked["memory_id"] = mem.id
        return self._update((current.id,), checked)

    def delete(self, message_id: uuid.UUID | str, *, purge: bool = False) -> None:
        """Soft delete (the message and its memory are hidden), or purge both."""
        current = self._get(message_id, include_deleted=purge)
        self._delete(current.id, purge=purge)
        if current.memory_id is not None:
            # Already gone (purged on its own): nothing left to hide.
            with contextlib.suppress(NotFound):
                self._memories.delete(current.memory_id, purge=purge)

    def search(
        self,
        query: str | None = None,
        *,
        room_id: str | None = None,
        agent_id: str | None = None,
        user_id: str | None = None,
        role: str | None = None,
        mode: str = "hybrid",
        top_k: int | None = None,
        threshold: float | None = None,
        embedding: Sequence[float] | None = None,
        as_of: datetime | str | None = None,
        explain: bool = False,
    ) -> builtins.list[MessageHit]:
        """Recall messages by meaning, words or both, within a room, for an agent or a user."""
        filters = None if role is None else {"data.role": role}
        hits = self._memories.search(
            query, embedding=embedding, mode=mode, top_k=top_k, threshold=threshold,
            kind="message", room_id=room_id, agent_id=agent_id, user_id=user_id,
            filters=filters, as_of=as_of, explain=explain,
        )  # fmt: skip
        if not hits:
            return []
        ids = [h.memory.id for h in hits]
        rows: builtins.list[Message] = self._store.list_resources(
            self._org, self.spec, [Where("memory_id", "in", ids)], limit=len(ids)
        )
        by_memory = {m.memory_id: m for m in rows}
        return [
            MessageHit(message=by_memory[h.memory.id], score=h.score, scores=h.scores)
            for h in hits
            if h.memory.id in by_memory
        ]
