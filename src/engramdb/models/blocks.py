"""Core memory blocks and tools, their links to agents, and versions of versioned resources."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from .common import NAME_ID_PATTERN, Model

__all__ = ["AgentBlock", "AgentTool", "Block", "ResourceVersion", "Tool"]

LABEL_PATTERN = r"^[A-Za-z][A-Za-z0-9_\-]{0,49}$"


class Block(Model):
    """A core memory block (``human``, ``persona``, ``system``, …); ``value`` never exceeds
    ``limit`` characters."""

    organization_id: str
    id: uuid.UUID
    label: str = Field(pattern=LABEL_PATTERN)
    value: str = ""
    limit: int = Field(2000, ge=1, le=1_000_000)
    description: str | None = None
    is_template: bool = False
    template_name: str | None = Field(None, max_length=256)
    read_only: bool = False
    user_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    metadata: dict[str, Any] = Field(default_factory=dict)
    version: int = 1
    created_at: datetime
    updated_at: datetime
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    deleted_at: datetime | None = None


class AgentBlock(Model):
    """An agent's use of a block (blocks are shared between agents)."""

    organization_id: str
    agent_id: str
    block_id: uuid.UUID
    created_at: datetime
    created_by_id: str | None = None


class Tool(Model):
    """A tool agents can call: its JSON schema and source."""

    organization_id: str
    id: uuid.UUID
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-.]{0,127}$")
    description: str | None = None
    json_schema: dict[str, Any] = Field(default_factory=dict)
    source_type: str | None = Field(None, max_length=64)
    source_code: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    deleted_at: datetime | None = None


class AgentTool(Model):
    """An agent's use of a tool."""

    organization_id: str
    agent_id: str
    tool_id: uuid.UUID
    created_at: datetime
    created_by_id: str | None = None


class ResourceVersion(Model):
    """A past state of a versioned resource (a block, …): what it was, and what ended it.

    ``snapshot`` holds the row as it was; the current state is the last entry with
    ``event="current"``.
    """

    resource_id: uuid.UUID
    version: int
    event: str
    snapshot: dict[str, Any]
    changed_at: datetime
    changed_by_id: str | None = None
