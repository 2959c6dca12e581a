"""Messages of a conversation, message search hits, and agents' event logs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from .common import NAME_ID_PATTERN, Model

__all__ = ["Log", "Message", "MessageHit", "Role"]

Role = Literal["user", "assistant", "system", "tool"]


class Message(Model):
    """One message (role, text, content parts, tool calls); ``memory_id`` holds its recallable text.

    Ids are time-ordered by the message's ``created_at``, so listing by id is chronological.
    """

    organization_id: str
    id: uuid.UUID
    room_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    agent_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    user_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    role: Role
    text: str | None = None
    content: list[Any] = Field(default_factory=list)
    tool_calls: list[Any] = Field(default_factory=list)
    tool_call_id: str | None = Field(None, max_length=256)
    tool_returns: list[Any] = Field(default_factory=list)
    name: str | None = Field(None, max_length=256)
    model: str | None = Field(None, max_length=256)
    step_id: str | None = Field(None, max_length=256)
    group_id: str | None = Field(None, max_length=256)
    sender_id: str | None = Field(None, max_length=256)
    otid: str | None = Field(None, max_length=256)
    memory_id: uuid.UUID | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    deleted_at: datetime | None = None


class MessageHit(Model):
    """A message a search found, scored like a memory hit (in [0, 1], higher is better)."""

    message: Message
    score: float
    scores: dict[str, float] = Field(default_factory=dict)


class Log(Model):
    """An agent event log entry (the seeds' ``logs``); separate from the audit log."""

    organization_id: str
    id: uuid.UUID
    agent_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    user_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    room_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    type: str = Field(min_length=1, max_length=100)
    body: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    deleted_at: datetime | None = None
