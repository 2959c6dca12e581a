"""Goals, relationships, memory links, decisions and their outcomes, sessions and workflows."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .common import NAME_ID_PATTERN, Model

__all__ = [
    "DecisionOutcome",
    "DecisionSummary",
    "ExecutionStatus",
    "Goal",
    "GoalStatus",
    "MemoryLink",
    "Objective",
    "OutcomeStatus",
    "Relationship",
    "Session",
    "Workflow",
    "WorkflowExecution",
]

GoalStatus = Literal["in_progress", "done", "failed"]
OutcomeStatus = Literal["pending", "success", "partial", "failure"]
Feedback = Literal["positive", "negative", "neutral"]
ExecutionStatus = Literal["running", "completed", "failed", "interrupted"]
_NAME = Field(pattern=NAME_ID_PATTERN)


class Objective(BaseModel):
    """One step towards a goal."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str = Field(min_length=1, max_length=2000)
    completed: bool = False


class Goal(Model):
    """An agent's goal (the seeds' goals): objectives with completion flags, in a room, for a user."""

    organization_id: str
    id: uuid.UUID
    agent_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    user_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    room_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    status: GoalStatus = "in_progress"
    objectives: list[Objective] = Field(default_factory=list, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)
    version: int = 1
    created_at: datetime
    updated_at: datetime
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    deleted_at: datetime | None = None


class Relationship(Model):
    """A directed relationship between two parties, each a user or an agent.

    Exactly one of ``source_user_id`` / ``source_agent_id`` is set, and likewise for the target;
    :attr:`source` and :attr:`target` give them as ``(type, id)``.
    """

    organization_id: str
    id: uuid.UUID
    source_user_id: str | None = None
    source_agent_id: str | None = None
    target_user_id: str | None = None
    target_agent_id: str | None = None
    kind: str = Field("knows", min_length=1, max_length=64)
    status: str = Field("active", min_length=1, max_length=32)
    strength: float | None = Field(None, ge=0, le=1)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    deleted_at: datetime | None = None

    @property
    def source(self) -> tuple[str, str]:
        if self.source_user_id is not None:
            return ("user", self.source_user_id)
        return ("agent", self.source_agent_id or "")

    @property
    def target(self) -> tuple[str, str]:
        if self.target_user_id is not None:
            return ("user", self.target_user_id)
        return ("agent", self.target_agent_id or "")


class MemoryLink(Model):
    """A directed link between two memories (``related``, ``supersedes``, ``decision``, …)."""

    organization_id: str
    source_id: uuid.UUID
    target_id: uuid.UUID
    kind: str = Field("related", pattern=r"^[a-z][a-z0-9_]{0,31}$")
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    created_by_id: str | None = None


class DecisionOutcome(Model):
    """A decision (linked to its episodic ``decision`` memory) and, once known, its outcome."""

    organization_id: str
    id: uuid.UUID
    memory_id: uuid.UUID | None = None
    agent_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    user_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    room_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    task_context: str = Field(min_length=1)
    alternatives: list[Any] = Field(default_factory=list, max_length=100)
    chosen_option: str = Field(min_length=1)
    reasoning: str = ""
    outcome_status: OutcomeStatus = "pending"
    outcome_details: dict[str, Any] = Field(default_factory=dict)
    lessons_learned: str | None = None
    user_feedback: Feedback | None = None
    resolved_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    version: int = 1
    created_at: datetime
    updated_at: datetime
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    deleted_at: datetime | None = None


class DecisionSummary(Model):
    """Counts of one agent's decisions by outcome; ``success_rate`` is over resolved ones."""

    agent_id: str | None
    total: int
    pending: int
    success: int
    partial: int
    failure: int
    success_rate: float | None


class Session(Model):
    """A working session of an agent: its state, so the work can be resumed."""

    organization_id: str
    id: uuid.UUID
    agent_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    user_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    room_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    name: str | None = Field(None, max_length=256)
    command: str | None = None
    status: ExecutionStatus = "running"
    state: dict[str, Any] = Field(default_factory=dict)
    started_at: datetime
    ended_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    version: int = 1
    created_at: datetime
    updated_at: datetime
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    deleted_at: datetime | None = None


class Workflow(Model):
    """A workflow definition: a graph of nodes, as JSON."""

    organization_id: str
    id: uuid.UUID
    agent_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    name: str = Field(min_length=1, max_length=100)
    description: str | None = None
    graph: dict[str, Any] = Field(default_factory=dict)
    status: Literal["active", "inactive", "archived"] = "active"
    metadata: dict[str, Any] = Field(default_factory=dict)
    version: int = 1
    created_at: datetime
    updated_at: datetime
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    deleted_at: datetime | None = None


class WorkflowExecution(Model):
    """One run of a workflow: where it is (``current_node``), its context, how it ended."""

    organization_id: str
    id: uuid.UUID
    workflow_id: uuid.UUID
    session_id: uuid.UUID | None = None
    agent_id: str | None = Field(None, pattern=NAME_ID_PATTERN)
    context: dict[str, Any] = Field(default_factory=dict)
    current_node: str | None = Field(None, max_length=100)
    status: ExecutionStatus = "running"
    error: str | None = None
    started_at: datetime
    completed_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    version: int = 1
    created_at: datetime
    updated_at: datetime
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    deleted_at: datetime | None = None
