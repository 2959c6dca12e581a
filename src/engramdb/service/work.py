"""Sessions, workflows and workflow executions: an agent's work, persisted and resumable."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from ..errors import Conflict, InvalidInput
from ..models import Page, new_id, utcnow
from ..models.planning import Session, Workflow, WorkflowExecution
from ..store.resources import EXECUTIONS, SESSIONS, WORKFLOWS, ResourceSpec, Where
from .resources import ResourceService, as_uuid, scope_where

__all__ = ["Sessions", "Workflows"]

_ENDED = ("completed", "failed", "interrupted")


class Sessions(ResourceService[Session]):
    """``db.sessions``: an agent's working sessions and the state to resume them from."""

    spec: ResourceSpec[Session] = SESSIONS
    _FIELDS = frozenset({"name", "command", "state", "metadata", "status"})

    def start(
        self,
        *,
        agent_id: str | None = None,
        user_id: str | None = None,
        room_id: str | None = None,
        name: str | None = None,
        command: str | None = None,
        state: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Session:
        checked = self._check(
            {"agent_id": agent_id, "user_id": user_id, "room_id": room_id, "name": name,
             "command": command, "state": state or {}, "metadata": metadata or {}}
        )  # fmt: skip
        checked["id"] = new_id()
        return self._insert(checked)

    def get(self, session_id: uuid.UUID | str) -> Session:
        return self._get(session_id)

    def update(self, session_id: uuid.UUID | str, **changes: Any) -> Session:
        """Change ``state`` (what to resume from), ``name``, ``command``, ``metadata``."""
        bad = set(changes) - self._FIELDS
        if bad:
            raise InvalidInput(f"session: unknown fields {sorted(bad)}")
        current = self._get(session_id)
        checked = self._check(changes, current)
        return self._update((current.id,), checked, expect_version=current.version)

    def end(
        self,
        session_id: uuid.UUID | str,
        status: str = "completed",
        *,
        state: dict[str, Any] | None = None,
    ) -> Session:
        """Close a session as ``completed``, ``failed`` or ``interrupted``."""
        if status not in _ENDED:
            raise InvalidInput(f"status must be one of {list(_ENDED)}")
        changes: dict[str, Any] = {"status": status}
        if state is not None:
            changes["state"] = state
        current = self._get(session_id)
        checked = self._check(changes, current)
        checked["ended_at"] = utcnow()
        return self._update((current.id,), checked, expect_version=current.version)

    def resume(self, session_id: uuid.UUID | str) -> Session:
        """Set an interrupted (or failed) session running again; returns it with its state."""
        current = self._get(session_id)
        if current.status == "completed":
            raise Conflict("a completed session cannot be resumed", details={"id": str(current.id)})
        return self._update(
            (current.id,), {"status": "running", "ended_at": None}, expect_version=current.version
        )

    def list(
        self,
        *,
        agent_id: str | None = None,
        user_id: str | None = None,
        status: str | Sequence[str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = True,
    ) -> Page[Session]:
        where = scope_where(agent_id=agent_id, user_id=user_id, status=status)
        return self._page(where, limit=limit, cursor=cursor, descending=newest_first)

    def delete(self, session_id: uuid.UUID | str, *, purge: bool = False) -> None:
        self._delete(session_id, purge=purge)


class _Executions(ResourceService[WorkflowExecution]):
    spec: ResourceSpec[WorkflowExecution] = EXECUTIONS


class Workflows(ResourceService[Workflow]):
    """``db.workflows``: workflow definitions (graphs) and their executions."""

    spec: ResourceSpec[Workflow] = WORKFLOWS
    _FIELDS = frozenset({"name", "description", "graph", "status", "metadata"})

    @property
    def _runs(self) -> _Executions:
        return _Executions(self._engine, self._org, self._actor)

    def add(
        self,
        name: str,
        graph: dict[str, Any],
        *,
        agent_id: str | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Workflow:
        """Define a workflow; ``name`` is unique per agent (Conflict)."""
        checked = self._check(
            {"name": name, "graph": graph, "agent_id": agent_id, "description": description,
             "metadata": metadata or {}}
        )  # fmt: skip
        checked["id"] = new_id()
        return self._insert(checked)

    def get(self, workflow_id: uuid.UUID | str) -> Workflow:
        return self._get(workflow_id)

    def list(
        self,
        *,
        agent_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Workflow]:
        return self._page(scope_where(agent_id=agent_id, status=status), limit=limit, cursor=cursor)

    def update(self, workflow_id: uuid.UUID | str, **changes: Any) -> Workflow:
        bad = set(changes) - self._FIELDS
        if bad:
            raise InvalidInput(f"workflow: unknown fields {sorted(bad)}")
        return self._patch((workflow_id,), changes)

    def delete(self, workflow_id: uuid.UUID | str, *, purge: bool = False) -> None:
        """Soft delete, or purge (its executions go with it)."""
        self._delete(workflow_id, purge=purge)

    # -- executions ----------------------------------------------------------------------------

    def start(
        self,
        workflow_id: uuid.UUID | str,
        *,
        context: dict[str, Any] | None = None,
        current_node: str | None = None,
        session_id: uuid.UUID | str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> WorkflowExecution:
        """Start a run of a workflow, optionally within a session."""
        wf = self._get(workflow_id)
        runs = self._runs
        values: dict[str, Any] = {
            "workflow_id": wf.id, "agent_id": wf.agent_id, "context": context or {},
            "current_node": current_node, "metadata": metadata or {},
        }  # fmt: skip
        if session_id is not None:
            values["session_id"] = as_uuid(session_id, "session_id")
        checked = runs._check(values)
        checked["id"] = new_id()
        return runs._insert(checked)

    def execution(self, execution_id: uuid.UUID | str) -> WorkflowExecution:
        return self._runs._get(execution_id)

    def advance(
        self,
        execution_id: uuid.UUID | str,
        current_node: str,
        *,
        context: dict[str, Any] | None = None,
        merge: bool = True,
    ) -> WorkflowExecution:
        """Move a running execution to ``current_node``; ``context`` is merged into (or, with
        ``merge=False``, replaces) the stored context."""
        runs = self._runs
        current = runs._get(execution_id)
        if current.status != "running":
            raise Conflict(
                f"execution {current.id} is {current.status}; resume it first",
                details={"status": current.status},
            )
        changes: dict[str, Any] = {"current_node": current_node}
        if context is not None:
            changes["context"] = {**current.context, **context} if merge else context
        checked = runs._check(changes, current)
        return runs._update((current.id,), checked, expect_version=current.version)

    def finish(
        self,
        execution_id: uuid.UUID | str,
        status: str = "completed",
        *,
        error: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> WorkflowExecution:
        """End a run as ``completed``, ``failed`` (with ``error``) or ``interrupted``."""
        if status not in _ENDED:
            raise InvalidInput(f"status must be one of {list(_ENDED)}")
        runs = self._runs
        current = runs._get(execution_id)
        changes: dict[str, Any] = {"status": status, "error": error}
        if context is not None:
            changes["context"] = context
        checked = runs._check(changes, current)
        checked["completed_at"] = None if status == "interrupted" else utcnow()
        return runs._update((current.id,), checked, expect_version=current.version)

    def resume(self, execution_id: uuid.UUID | str) -> WorkflowExecution:
        """Set an interrupted run running again, at the node and with the context it had."""
        runs = self._runs
        current = runs._get(execution_id)
        if current.status != "interrupted":
            raise Conflict(
                f"only an interrupted execution can be resumed; this one is {current.status}",
                details={"status": current.status},
            )
        return runs._update(
            (current.id,), {"status": "running", "error": None}, expect_version=current.version
        )

    def executions(
        self,
        *,
        workflow_id: uuid.UUID | str | None = None,
        agent_id: str | None = None,
        session_id: uuid.UUID | str | None = None,
        status: str | Sequence[str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = True,
    ) -> Page[WorkflowExecution]:
        """Runs, newest first; ``status="interrupted"`` finds the work to resume."""
        where = scope_where(agent_id=agent_id, status=status)
        if workflow_id is not None:
            where.append(Where("workflow_id", "eq", as_uuid(workflow_id, "workflow_id")))
        if session_id is not None:
            where.append(Where("session_id", "eq", as_uuid(session_id, "session_id")))
        return self._runs._page(where, limit=limit, cursor=cursor, descending=newest_first)
