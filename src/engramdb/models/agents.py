"""Users, agents, their memory configuration, rooms and room participants."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from .common import NAME_ID_PATTERN, Model

__all__ = ["Agent", "AgentMemoryConfig", "Participant", "Room", "User"]

_EMAIL = r"^[^@\s]+@[^@\s]+$"


class User(Model):
    """A person agents talk to (the seeds' accounts / users); ``id`` is the caller's own string."""

    organization_id: str
    id: str = Field(pattern=NAME_ID_PATTERN)
    name: str | None = Field(None, max_length=256)
    username: str | None = Field(None, max_length=128)
    email: str | None = Field(None, max_length=320, pattern=_EMAIL)
    avatar_url: str | None = Field(None, max_length=2048)
    status: str = Field("active", max_length=32)
    timezone: str | None = Field(None, max_length=64)
    details: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    deleted_at: datetime | None = None


class Agent(Model):
    """An agent: its prompt, models and tool rules; ``id`` is the caller's own string."""

    organization_id: str
    id: str = Field(pattern=NAME_ID_PATTERN)
    name: str | None = Field(None, max_length=256)
    agent_type: str | None = Field(None, max_length=64)
    description: str | None = None
    system_prompt: str | None = None
    topic: str | None = Field(None, max_length=256)
    llm_config: dict[str, Any] = Field(default_factory=dict)
    embedding_config: dict[str, Any] = Field(default_factory=dict)
    tool_rules: list[Any] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    deleted_at: datetime | None = None


class AgentMemoryConfig(Model):
    """How one agent's memories are searched and kept; ``None`` means the engine's default.

    Search uses the weights, ``top_k`` and ``threshold`` and add uses ``dedup_threshold`` whenever
    the caller does not pass them; a memory written without ``expires_at`` expires
    ``retention_days`` after it was created; blocks use ``block_char_limit`` and ``max_blocks``.
    ``embedding_model`` records which model the agent's vectors come from (engramdb embeds with
    its configured embedder).
    """

    organization_id: str
    agent_id: str = Field(pattern=NAME_ID_PATTERN)
    embedding_model: str | None = Field(None, max_length=256)
    vector_weight: float | None = Field(None, ge=0)
    text_weight: float | None = Field(None, ge=0)
    recency_weight: float | None = Field(None, ge=0, le=1)
    importance_weight: float | None = Field(None, ge=0, le=1)
    half_life_days: float | None = Field(None, gt=0)
    fusion: Literal["rrf", "weighted"] | None = None
    top_k: int | None = Field(None, ge=1, le=1000)
    threshold: float | None = Field(None, ge=0, le=1)
    dedup_threshold: float | None = Field(None, ge=0, le=1)
    retention_days: int | None = Field(None, ge=1)
    block_char_limit: int | None = Field(None, ge=1, le=1_000_000)
    max_blocks: int | None = Field(None, ge=1, le=1000)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    deleted_at: datetime | None = None

    def weights_overrides(self) -> dict[str, Any]:
        """The :class:`engramdb.Weights` fields this configuration sets."""
        names = {
            "vector_weight": "vector", "text_weight": "text", "recency_weight": "recency",
            "importance_weight": "importance", "half_life_days": "half_life_days",
            "fusion": "fusion",
        }  # fmt: skip
        return {
            short: getattr(self, name)
            for name, short in names.items()
            if getattr(self, name) is not None
        }


class Room(Model):
    """A conversation space (the seeds' rooms and memory contexts); ``id`` is the caller's."""

    organization_id: str
    id: str = Field(pattern=NAME_ID_PATTERN)
    name: str | None = Field(None, max_length=256)
    description: str | None = None
    agent_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    deleted_at: datetime | None = None


class Participant(Model):
    """Membership of a user or an agent in a room, with when it joined and its state."""

    organization_id: str
    id: uuid.UUID
    room_id: str = Field(pattern=NAME_ID_PATTERN)
    user_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    agent_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    state: str | None = Field(None, max_length=32)
    joined_at: datetime
    last_seen_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    deleted_at: datetime | None = None
