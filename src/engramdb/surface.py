"""The HTTP surface of the data model: which library method answers which route.

One table, read by the server (to mount the routes) and by the remote client (to call them), so
the two cannot drift apart. Each :class:`Route` names a method of a resource (``db.blocks.append``),
its HTTP verb and path, the method's positional parameters (so the client can name positional
arguments), and the shape of its answer.

Path parameters are the method's parameters of the same name. The other arguments travel as the
query string for ``GET`` and ``DELETE`` and as a JSON object body otherwise, always by name, so
the server calls the method exactly as a library caller would.

Memories' own CRUD and search (``/v1/memories``) and the generic routes of users, agents and rooms
are written out in the server; this table adds everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Formatter
from typing import Any, Literal

from pydantic import BaseModel

from .models import Memory
from .models.agents import AgentMemoryConfig, Participant
from .models.blocks import AgentBlock, AgentTool, Block, ResourceVersion, Tool
from .models.conversation import Log, Message, MessageHit
from .models.planning import (
    DecisionOutcome,
    DecisionSummary,
    Goal,
    MemoryLink,
    Relationship,
    Session,
    Workflow,
    WorkflowExecution,
)

__all__ = ["ROUTES", "Result", "Route", "routes_of"]

#: The shape of an answer: one model; a keyset page ``{"items", "next_cursor"}``; a list
#: ``{"items"}``; search hits ``{"results"}``; nothing (204); text ``{"text"}``.
Result = Literal["one", "page", "items", "hits", "none", "text"]


@dataclass(frozen=True)
class Route:
    """``db.<resource>.<method>`` as ``<verb> <path>``."""

    method: str
    verb: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str
    args: tuple[str, ...]
    result: Result
    model: type[BaseModel] | type[str] | None
    summary: str
    status: int = 200

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(name for _, name, _, _ in Formatter().parse(self.path) if name)

    @property
    def writes(self) -> bool:
        return self.verb != "GET"

    @property
    def takes_body(self) -> bool:
        return self.verb in ("POST", "PUT", "PATCH")


def _r(
    method: str,
    verb: Any,
    path: str,
    args: tuple[str, ...],
    result: Result,
    model: Any,
    summary: str,
    status: int | None = None,
) -> Route:
    if status is None:
        status = 204 if result == "none" else 200
    return Route(method, verb, path, args, result, model, summary, status)


_MEM = "/v1/memories/{%s}"
_EXEC = "/v1/workflow-executions"

# fmt: off
#: Per resource (the attribute of ``Engram``), its routes beyond the generic ones. Static paths
#: come before parameterised ones with the same prefix, so ``/summary`` is never taken for an id.
ROUTES: dict[str, tuple[Route, ...]] = {
    "memories": (
        _r("link", "POST", _MEM % "source_id" + "/links", ("source_id", "target_id", "kind",
           "metadata"), "one", MemoryLink, "Link this memory to another (related, caused_by, …)",
           201),
        _r("links", "GET", _MEM % "memory_id" + "/links", ("memory_id",), "items", MemoryLink,
           "Links around a memory: ?direction=out|in|both, ?kind="),
        _r("related", "GET", _MEM % "memory_id" + "/related", ("memory_id",), "items", Memory,
           "Memories linked to this one, followed either way"),
        _r("unlink", "DELETE", _MEM % "source_id" + "/links/{target_id}",
           ("source_id", "target_id", "kind"), "none", None, "Remove a link (?kind=, default related)"),
        _r("supersede", "POST", _MEM % "old_id" + "/supersede", ("old_id", "content"), "one",
           Memory, "A new version of a fact: closes the old one's validity and links the two",
           201),
    ),
    "agents": (
        _r("config", "GET", "/v1/agents/{agent_id}/config", ("agent_id",), "one",
           AgentMemoryConfig, "An agent's memory configuration (null fields use the defaults)"),
        _r("set_config", "PATCH", "/v1/agents/{agent_id}/config", ("agent_id",), "one",
           AgentMemoryConfig, "Set memory configuration fields (null clears one)"),
        _r("reset_config", "DELETE", "/v1/agents/{agent_id}/config", ("agent_id",), "none", None,
           "Back to the defaults for every configuration field"),
    ),
    "rooms": (
        _r("join", "POST", "/v1/rooms/{room_id}/participants", ("room_id",), "one", Participant,
           "Add a user or an agent to a room", 201),
        _r("participants", "GET", "/v1/rooms/{room_id}/participants", ("room_id",), "page",
           Participant, "Current members of a room, in joining order"),
        _r("set_state", "PATCH", "/v1/rooms/{room_id}/participants", ("room_id", "state"), "one",
           Participant, "A member's state in the room (FOLLOWED, MUTED, …)"),
        _r("leave", "DELETE", "/v1/rooms/{room_id}/participants", ("room_id",), "none", None,
           "Remove a member (?user_id= or ?agent_id=)"),
        _r("rooms_of", "GET", "/v1/participants", (), "page", Participant,
           "Memberships of a user or an agent (?user_id= or ?agent_id=)"),
    ),
    "messages": (
        _r("add", "POST", "/v1/messages", ("role", "text"), "one", Message,
           "Store a message (its text becomes recallable)", 201),
        _r("add_many", "POST", "/v1/messages/batch", ("items",), "items", Message,
           "Store a batch of messages, all or nothing", 201),
        _r("search", "POST", "/v1/messages/search", ("query",), "hits", MessageHit,
           "Recall messages by meaning, words or both"),
        _r("list", "GET", "/v1/messages", (), "page", Message,
           "Messages in conversation order (keyset pages)"),
        _r("get", "GET", "/v1/messages/{message_id}", ("message_id",), "one", Message,
           "One message"),
        _r("update", "PATCH", "/v1/messages/{message_id}", ("message_id",), "one", Message,
           "Change a message's text, content, tool calls, name or metadata"),
        _r("delete", "DELETE", "/v1/messages/{message_id}", ("message_id",), "none", None,
           "Soft delete a message and its memory; ?purge=true deletes both"),
    ),
    "blocks": (
        _r("add", "POST", "/v1/blocks", ("label", "value"), "one", Block,
           "Create a core memory block (attached to agent_id if given)", 201),
        _r("list", "GET", "/v1/blocks", (), "page", Block, "Blocks (keyset pages)"),
        _r("get", "GET", "/v1/blocks/{block_id}", ("block_id",), "one", Block, "One block"),
        _r("update", "PATCH", "/v1/blocks/{block_id}", ("block_id",), "one", Block,
           "Change a block's fields (refused over its limit)"),
        _r("delete", "DELETE", "/v1/blocks/{block_id}", ("block_id",), "none", None,
           "Soft delete a block; ?purge=true deletes it and its history"),
        _r("replace", "POST", "/v1/blocks/{block_id}/replace", ("block_id", "value"), "one",
           Block, "Set the whole value (refused over the limit, nothing changed)"),
        _r("append", "POST", "/v1/blocks/{block_id}/append", ("block_id", "text"), "one", Block,
           "Append text (refused over the limit, nothing changed)"),
        _r("str_replace", "POST", "/v1/blocks/{block_id}/str_replace", ("block_id", "old", "new"),
           "one", Block, "Replace the one exact occurrence of a substring"),
        _r("history", "GET", "/v1/blocks/{block_id}/history", ("block_id",), "items",
           ResourceVersion, "Every value the block had, oldest first"),
        _r("agents", "GET", "/v1/blocks/{block_id}/agents", ("block_id",), "items", str,
           "Ids of the agents sharing this block"),
        _r("attach", "PUT", "/v1/blocks/{block_id}/agents/{agent_id}", ("block_id", "agent_id"),
           "one", AgentBlock, "Give an agent this block", 201),
        _r("detach", "DELETE", "/v1/blocks/{block_id}/agents/{agent_id}",
           ("block_id", "agent_id"), "none", None, "Take this block from an agent"),
        _r("for_agent", "GET", "/v1/agents/{agent_id}/blocks", ("agent_id",), "items", Block,
           "An agent's blocks, by label"),
        _r("render", "GET", "/v1/agents/{agent_id}/blocks/render", ("agent_id",), "text", None,
           "An agent's blocks as the text an LLM prompt includes"),
    ),
    "tools": (
        _r("add", "POST", "/v1/tools", ("name",), "one", Tool,
           "Create a tool (attached to agent_id if given)", 201),
        _r("list", "GET", "/v1/tools", (), "page", Tool, "Tools (keyset pages)"),
        _r("get_by_name", "GET", "/v1/tools/by-name/{name}", ("name",), "one", Tool,
           "A tool by its name"),
        _r("get", "GET", "/v1/tools/{tool_id}", ("tool_id",), "one", Tool, "One tool"),
        _r("update", "PATCH", "/v1/tools/{tool_id}", ("tool_id",), "one", Tool, "Change a tool"),
        _r("delete", "DELETE", "/v1/tools/{tool_id}", ("tool_id",), "none", None,
           "Soft delete a tool; ?purge=true deletes it and its agent links"),
        _r("attach", "PUT", "/v1/tools/{tool_id}/agents/{agent_id}", ("tool_id", "agent_id"),
           "one", AgentTool, "Give an agent this tool", 201),
        _r("detach", "DELETE", "/v1/tools/{tool_id}/agents/{agent_id}", ("tool_id", "agent_id"),
           "none", None, "Take this tool from an agent"),
        _r("for_agent", "GET", "/v1/agents/{agent_id}/tools", ("agent_id",), "items", Tool,
           "An agent's tools, by name"),
    ),
    "goals": (
        _r("add", "POST", "/v1/goals", ("name",), "one", Goal, "Create a goal with objectives",
           201),
        _r("list", "GET", "/v1/goals", (), "page", Goal, "Goals (keyset pages)"),
        _r("get", "GET", "/v1/goals/{goal_id}", ("goal_id",), "one", Goal, "One goal"),
        _r("update", "PATCH", "/v1/goals/{goal_id}", ("goal_id",), "one", Goal,
           "Change a goal's name, description, status, objectives or metadata"),
        _r("set_objective", "POST", "/v1/goals/{goal_id}/objective", ("goal_id", "objective"),
           "one", Goal, "Mark one objective (index or description) done or not done"),
        _r("delete", "DELETE", "/v1/goals/{goal_id}", ("goal_id",), "none", None,
           "Soft delete a goal; ?purge=true deletes it"),
    ),
    "relationships": (
        _r("add", "POST", "/v1/relationships", ("source_id", "target_id"), "one", Relationship,
           "A directed relationship between users and agents", 201),
        _r("list", "GET", "/v1/relationships", (), "page", Relationship,
           "Relationships of a user or an agent (?direction=in|out|both)"),
        _r("get", "GET", "/v1/relationships/{rel_id}", ("rel_id",), "one", Relationship,
           "One relationship"),
        _r("update", "PATCH", "/v1/relationships/{rel_id}", ("rel_id",), "one", Relationship,
           "Change a relationship's kind, status, strength or metadata"),
        _r("delete", "DELETE", "/v1/relationships/{rel_id}", ("rel_id",), "none", None,
           "Soft delete a relationship; ?purge=true deletes it"),
    ),
    "decisions": (
        _r("record", "POST", "/v1/decisions", ("task_context", "chosen_option"), "one",
           DecisionOutcome, "Record a decision (and its episodic memory)", 201),
        _r("summary", "GET", "/v1/decisions/summary", (), "items", DecisionSummary,
           "Decisions by outcome and success rate, per agent"),
        _r("list", "GET", "/v1/decisions", (), "page", DecisionOutcome,
           "Decisions, newest first (keyset pages)"),
        _r("get", "GET", "/v1/decisions/{decision_id}", ("decision_id",), "one", DecisionOutcome,
           "One decision"),
        _r("resolve", "POST", "/v1/decisions/{decision_id}/resolve",
           ("decision_id", "outcome_status"), "one", DecisionOutcome,
           "Record how a decision went (success, partial, failure)"),
        _r("feedback", "POST", "/v1/decisions/{decision_id}/feedback",
           ("decision_id", "user_feedback"), "one", DecisionOutcome,
           "The user's verdict: positive, negative or neutral"),
    ),
    "sessions": (
        _r("start", "POST", "/v1/sessions", (), "one", Session, "Start a working session", 201),
        _r("list", "GET", "/v1/sessions", (), "page", Session, "Sessions, newest first"),
        _r("get", "GET", "/v1/sessions/{session_id}", ("session_id",), "one", Session,
           "One session"),
        _r("update", "PATCH", "/v1/sessions/{session_id}", ("session_id",), "one", Session,
           "Change a session's state, name, command or metadata"),
        _r("end", "POST", "/v1/sessions/{session_id}/end", ("session_id", "status"), "one",
           Session, "End a session: completed, failed or interrupted"),
        _r("resume", "POST", "/v1/sessions/{session_id}/resume", ("session_id",), "one", Session,
           "Set an interrupted or failed session running again"),
        _r("delete", "DELETE", "/v1/sessions/{session_id}", ("session_id",), "none", None,
           "Soft delete a session; ?purge=true deletes it"),
    ),
    "workflows": (
        _r("add", "POST", "/v1/workflows", ("name", "graph"), "one", Workflow,
           "Define a workflow (a graph, as JSON)", 201),
        _r("list", "GET", "/v1/workflows", (), "page", Workflow, "Workflows (keyset pages)"),
        _r("get", "GET", "/v1/workflows/{workflow_id}", ("workflow_id",), "one", Workflow,
           "One workflow"),
        _r("update", "PATCH", "/v1/workflows/{workflow_id}", ("workflow_id",), "one", Workflow,
           "Change a workflow"),
        _r("delete", "DELETE", "/v1/workflows/{workflow_id}", ("workflow_id",), "none", None,
           "Soft delete a workflow; ?purge=true deletes it and its executions"),
        _r("start", "POST", "/v1/workflows/{workflow_id}/executions", ("workflow_id",), "one",
           WorkflowExecution, "Start a run of a workflow", 201),
        _r("executions", "GET", _EXEC, (), "page", WorkflowExecution,
           "Workflow runs, newest first (?status=interrupted: work to resume)"),
        _r("execution", "GET", _EXEC + "/{execution_id}", ("execution_id",), "one",
           WorkflowExecution, "One workflow run"),
        _r("advance", "POST", _EXEC + "/{execution_id}/advance", ("execution_id",
           "current_node"), "one", WorkflowExecution, "Move a running execution to a node"),
        _r("finish", "POST", _EXEC + "/{execution_id}/finish", ("execution_id", "status"), "one",
           WorkflowExecution, "End a run: completed, failed or interrupted"),
        _r("resume", "POST", _EXEC + "/{execution_id}/resume", ("execution_id",), "one",
           WorkflowExecution, "Set an interrupted run running again"),
    ),
    "logs": (
        _r("add", "POST", "/v1/logs", ("type", "body"), "one", Log, "Write an agent event log",
           201),
        _r("list", "GET", "/v1/logs", (), "page", Log, "Agent event logs, newest first"),
        _r("get", "GET", "/v1/logs/{log_id}", ("log_id",), "one", Log, "One log entry"),
        _r("delete", "DELETE", "/v1/logs/{log_id}", ("log_id",), "none", None,
           "Soft delete a log entry; ?purge=true deletes it"),
    ),
}
# fmt: on


def routes_of(resource: str) -> dict[str, Route]:
    """The routes of one resource, by library method name."""
    return {r.method: r for r in ROUTES.get(resource, ())}
