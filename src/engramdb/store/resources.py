"""The tables of the data model beyond memories, described once for every backend.

A :class:`ResourceSpec` says which table holds a resource, which model its rows become, its key,
which columns hold JSON, which caller-named ids it registers on first use, and whether deletes
are soft and updates versioned. Each backend implements the generic operations (insert, get,
list with keyset pagination, update, delete, upsert, count, history) once, for every spec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel

from ..models.agents import Agent, AgentMemoryConfig, Participant, Room, User
from ..models.blocks import AgentBlock, AgentTool, Block, ResourceVersion, Tool
from ..models.conversation import Log, Message
from ..models.planning import (
    DecisionOutcome,
    Goal,
    MemoryLink,
    Relationship,
    Session,
    Workflow,
    WorkflowExecution,
)

__all__ = ["SPECS", "ResourceSpec", "ResourceStore", "Where", "WhereOp"]

R = TypeVar("R", bound=BaseModel)

WhereOp = Literal["eq", "ne", "in", "lt", "lte", "gt", "gte", "null", "not_null"]


@dataclass(frozen=True)
class Where:
    """``column op value``. A tuple of columns means "any of them" (``a = v OR b = v``)."""

    column: str | tuple[str, ...]
    op: WhereOp
    value: Any = None

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,) if isinstance(self.column, str) else self.column


@dataclass(frozen=True)
class ResourceSpec(Generic[R]):
    """One table of the data model, as the generic store operations need it."""

    name: str
    table: str
    model: type[R]
    key: tuple[str, ...] = ("id",)
    json_columns: frozenset[str] = frozenset()
    #: caller-named id columns → the table they are registered in on first use
    registers: Mapping[str, str] = field(default_factory=dict)
    soft_delete: bool = True
    versioned: bool = False
    history_table: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column, in the model's field order (``organization_id`` included)."""
        return tuple(self.model.model_fields)

    def check_columns(self, names: Any) -> None:
        known = set(self.columns)
        for name in names:
            if name not in known:
                raise ValueError(f"{self.table} has no column {name!r}")


_META = frozenset({"metadata"})
_SCOPES = {"agent_id": "agents", "user_id": "users", "room_id": "rooms"}


def _spec(name: str, table: str, model: type[R], json: tuple[str, ...] = (), **kw: Any) -> Any:
    return ResourceSpec(name, table, model, json_columns=_META | frozenset(json), **kw)


USERS: ResourceSpec[User] = _spec("user", "users", User, ("details",))
AGENTS: ResourceSpec[Agent] = _spec(
    "agent", "agents", Agent, ("llm_config", "embedding_config", "tool_rules")
)
AGENT_CONFIG: ResourceSpec[AgentMemoryConfig] = _spec(
    "agent memory config", "agent_memory_config", AgentMemoryConfig,
    key=("agent_id",), registers={"agent_id": "agents"},
)  # fmt: skip
ROOMS: ResourceSpec[Room] = _spec("room", "rooms", Room, registers={"agent_id": "agents"})
PARTICIPANTS: ResourceSpec[Participant] = _spec(
    "participant", "participants", Participant, registers=_SCOPES
)
MESSAGES: ResourceSpec[Message] = _spec(
    "message", "messages", Message, ("content", "tool_calls", "tool_returns"), registers=_SCOPES
)
BLOCKS: ResourceSpec[Block] = _spec(
    "block", "blocks", Block, registers={"user_id": "users"}, versioned=True,
    history_table="block_history",
)  # fmt: skip
AGENT_BLOCKS: ResourceSpec[AgentBlock] = ResourceSpec(
    "agent block", "agent_blocks", AgentBlock, key=("agent_id", "block_id"),
    registers={"agent_id": "agents"}, soft_delete=False,
)  # fmt: skip
TOOLS: ResourceSpec[Tool] = _spec("tool", "tools", Tool, ("json_schema", "tags"))
AGENT_TOOLS: ResourceSpec[AgentTool] = ResourceSpec(
    "agent tool", "agent_tools", AgentTool, key=("agent_id", "tool_id"),
    registers={"agent_id": "agents"}, soft_delete=False,
)  # fmt: skip
GOALS: ResourceSpec[Goal] = _spec(
    "goal", "goals", Goal, ("objectives",), registers=_SCOPES, versioned=True
)
RELATIONSHIPS: ResourceSpec[Relationship] = _spec(
    "relationship", "relationships", Relationship,
    registers={"source_user_id": "users", "source_agent_id": "agents",
               "target_user_id": "users", "target_agent_id": "agents"},
)  # fmt: skip
MEMORY_LINKS: ResourceSpec[MemoryLink] = _spec(
    "memory link", "memory_links", MemoryLink,
    key=("source_id", "target_id", "kind"), soft_delete=False,
)  # fmt: skip
DECISIONS: ResourceSpec[DecisionOutcome] = _spec(
    "decision", "decision_outcomes", DecisionOutcome, ("alternatives", "outcome_details"),
    registers=_SCOPES, versioned=True,
)  # fmt: skip
SESSIONS: ResourceSpec[Session] = _spec(
    "session", "sessions", Session, ("state",), registers=_SCOPES, versioned=True
)
WORKFLOWS: ResourceSpec[Workflow] = _spec(
    "workflow", "workflows", Workflow, ("graph",), registers={"agent_id": "agents"},
    versioned=True,
)  # fmt: skip
EXECUTIONS: ResourceSpec[WorkflowExecution] = _spec(
    "workflow execution", "workflow_executions", WorkflowExecution, ("context",),
    registers={"agent_id": "agents"}, versioned=True,
)  # fmt: skip
LOGS: ResourceSpec[Log] = _spec("log", "logs", Log, ("body",), registers=_SCOPES)

#: Every spec by table name.
SPECS: dict[str, ResourceSpec[Any]] = {
    s.table: s
    for s in (
        USERS, AGENTS, AGENT_CONFIG, ROOMS, PARTICIPANTS, MESSAGES, BLOCKS, AGENT_BLOCKS, TOOLS,
        AGENT_TOOLS, GOALS, RELATIONSHIPS, MEMORY_LINKS, DECISIONS, SESSIONS, WORKFLOWS,
        EXECUTIONS, LOGS,
    )
}  # fmt: skip


class ResourceStore(Protocol):
    """The generic operations every backend implements once, for every :class:`ResourceSpec`.

    ``key`` is a tuple of values in ``spec.key`` order. Caller-named ids in ``spec.registers``
    are registered on first use, in the same transaction as the write.
    """

    def insert_resources(
        self,
        org: str,
        spec: ResourceSpec[R],
        rows: Sequence[Mapping[str, Any]],
        *,
        actor: str | None,
    ) -> list[R]:
        """Insert rows in one transaction; returns them in input order."""
        ...

    def get_resource(
        self, org: str, spec: ResourceSpec[R], key: Sequence[Any], *, include_deleted: bool = False
    ) -> R: ...

    def list_resources(
        self,
        org: str,
        spec: ResourceSpec[R],
        where: Sequence[Where],
        *,
        limit: int,
        after: Sequence[Any] | None = None,
        descending: bool = False,
        include_deleted: bool = False,
    ) -> list[R]:
        """Ordered by the key; strictly after the cursor key (``after``) when given."""
        ...

    def update_resource(
        self,
        org: str,
        spec: ResourceSpec[R],
        key: Sequence[Any],
        changes: Mapping[str, Any],
        *,
        actor: str | None,
        expect_version: int | None = None,
        event: str = "update",
        include_deleted: bool = False,
    ) -> R:
        """Apply ``changes``; versioned specs bump ``version`` (and refuse with Conflict when it is
        not ``expect_version``) and keep the previous state in the history table, atomically."""
        ...

    def delete_resource(
        self, org: str, spec: ResourceSpec[R], key: Sequence[Any], *, purge: bool, actor: str | None
    ) -> None:
        """Soft delete (purge for specs without soft delete), or purge: the row is gone."""
        ...

    def delete_resources(
        self,
        org: str,
        spec: ResourceSpec[R],
        where: Sequence[Where],
        *,
        purge: bool,
        actor: str | None,
    ) -> int:
        """Delete every live row matching ``where``; returns how many."""
        ...

    def upsert_resource(
        self, org: str, spec: ResourceSpec[R], values: Mapping[str, Any], *, actor: str | None
    ) -> R:
        """Insert, or update the row with the same key (reviving it if soft-deleted)."""
        ...

    def count_resources(
        self, org: str, spec: ResourceSpec[R], where: Sequence[Where], *, group_by: Sequence[str]
    ) -> list[tuple[tuple[Any, ...], int]]:
        """Live rows matching ``where``, counted per distinct ``group_by`` values."""
        ...

    def resource_history(
        self, org: str, spec: ResourceSpec[R], key: Sequence[Any]
    ) -> list[ResourceVersion]:
        """Past versions of a row of a spec with a history table, oldest first, then the
        current state (``event="current"``)."""
        ...
