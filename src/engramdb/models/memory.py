"""Memories: what an agent recalls, with its history and search results."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .common import NAME_ID_PATTERN, Model, importance_value

#: Kinds with a meaning of their own; any other lowercase identifier is accepted as a custom kind.
KNOWN_KINDS = ("message", "episodic", "semantic", "procedural", "reflection", "summary")
KIND_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"

SearchMode = Literal["hybrid", "vector", "text"]
Metric = Literal["cosine", "l2", "ip"]


class Memory(Model):
    """A stored memory. ``embedding`` is only filled when asked for (it is large)."""

    id: uuid.UUID
    organization_id: str
    kind: str
    content: str
    agent_id: str | None = None
    user_id: str | None = None
    room_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    importance: float = 0.5
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    scope: str | None = None
    level: str | None = None
    content_hash: str
    is_unique: bool = True
    related_ids: list[uuid.UUID] = Field(default_factory=list)
    access_count: int = 0
    last_accessed_at: datetime | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    expires_at: datetime | None = None
    version: int = 1
    embedding_model: str | None = None
    embedding: list[float] | None = None
    created_at: datetime
    updated_at: datetime
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    deleted_at: datetime | None = None


class MemoryVersion(Model):
    """One version of a memory: the state it had, and what ended it (``update``, ``delete``, …).

    The current state is the last entry, with ``event="current"``.
    """

    memory_id: uuid.UUID
    version: int
    event: str
    memory: Memory
    changed_at: datetime
    changed_by_id: str | None = None


class SearchHit(Model):
    """A search result: ``score`` in [0, 1], higher is better; ``scores`` holds the components."""

    memory: Memory
    score: float
    scores: dict[str, float] = Field(default_factory=dict)


class MemoryInput(BaseModel):
    """What a caller may send to create a memory (library keyword arguments, HTTP body, import)."""

    model_config = ConfigDict(extra="forbid")

    content: str
    kind: str = Field("semantic", pattern=KIND_PATTERN)
    agent_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    user_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    room_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    data: dict[str, Any] = Field(default_factory=dict)
    importance: float | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    scope: str | None = Field(None, max_length=64)
    level: str | None = Field(None, max_length=64)
    is_unique: bool = True
    related_ids: list[uuid.UUID] = Field(default_factory=list)
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    expires_at: datetime | None = None
    embedding: list[float] | None = None
    created_at: datetime | None = None

    @field_validator("importance", mode="before")
    @classmethod
    def _importance(cls, value: Any) -> float | None:
        return importance_value(value)

    @field_validator("valid_from", "valid_to", "expires_at", "created_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # Naive times are taken as UTC, so the same input means the same moment on every backend.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value
