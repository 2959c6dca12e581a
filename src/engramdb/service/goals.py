"""Goals with objectives, and relationships between users and agents."""

from __future__ import annotations

import builtins
import re
import uuid
from collections.abc import Sequence
from typing import Any

from ..errors import Conflict, InvalidInput, NotFound
from ..models import Page, new_id
from ..models.common import NAME_ID_PATTERN
from ..models.planning import Goal, Objective, Relationship
from ..store.resources import GOALS, RELATIONSHIPS, ResourceSpec, Where
from .resources import ResourceService, scope_where

__all__ = ["Goals", "Relationships"]

_GOAL_FIELDS = frozenset({"name", "description", "status", "objectives", "metadata"})
_PARTY_TYPES = ("user", "agent")


def _objectives(items: Sequence[str | dict[str, Any] | Objective] | None) -> builtins.list[Any]:
    out: builtins.list[Any] = []
    for item in items or []:
        if isinstance(item, str):
            out.append({"description": item, "completed": False})
        elif isinstance(item, Objective):
            out.append(item.model_dump())
        else:
            out.append(item)
    return out


class Goals(ResourceService[Goal]):
    """``db.goals``: what an agent is working towards, objective by objective."""

    spec: ResourceSpec[Goal] = GOALS

    def add(
        self,
        name: str,
        *,
        objectives: Sequence[str | dict[str, Any] | Objective] | None = None,
        agent_id: str | None = None,
        user_id: str | None = None,
        room_id: str | None = None,
        description: str | None = None,
        status: str = "in_progress",
        metadata: dict[str, Any] | None = None,
    ) -> Goal:
        """Create a goal; objectives are strings or ``{"description", "completed"}``."""
        checked = self._check(
            {"name": name, "objectives": _objectives(objectives), "agent_id": agent_id,
             "user_id": user_id, "room_id": room_id, "description": description,
             "status": status, "metadata": metadata or {}}
        )  # fmt: skip
        checked["id"] = new_id()
        return self._insert(checked)

    def get(self, goal_id: uuid.UUID | str, *, include_deleted: bool = False) -> Goal:
        return self._get(goal_id, include_deleted=include_deleted)

    def list(
        self,
        *,
        agent_id: str | None = None,
        user_id: str | None = None,
        room_id: str | None = None,
        status: str | Sequence[str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Goal]:
        where = scope_where(agent_id=agent_id, user_id=user_id, room_id=room_id, status=status)
        return self._page(where, limit=limit, cursor=cursor)

    def update(self, goal_id: uuid.UUID | str, **changes: Any) -> Goal:
        """Change ``name``, ``description``, ``status``, ``objectives`` or ``metadata``."""
        bad = set(changes) - _GOAL_FIELDS
        if bad:
            raise InvalidInput(f"goal: unknown fields {sorted(bad)}")
        if "objectives" in changes:
            changes["objectives"] = _objectives(changes["objectives"])
        current = self._get(goal_id)
        checked = self._check(changes, current)
        return self._update((current.id,), checked, expect_version=current.version)

    def set_objective(
        self,
        goal_id: uuid.UUID | str,
        objective: int | str,
        *,
        completed: bool = True,
        complete_goal: bool = False,
    ) -> Goal:
        """Mark one objective (by index, or by its exact description) done or not done.

        With ``complete_goal``, the goal becomes ``done`` once every objective is completed.
        """
        for _ in range(5):
            goal = self._get(goal_id)
            items = [o.model_dump() for o in goal.objectives]
            index = self._find(items, objective)
            items[index]["completed"] = completed
            changes: dict[str, Any] = {"objectives": items}
            if complete_goal and all(o["completed"] for o in items):
                changes["status"] = "done"
            try:
                return self._update((goal.id,), changes, expect_version=goal.version)
            except Conflict as exc:
                if "version" not in exc.details:
                    raise
        raise Conflict("the goal keeps changing; try again")

    @staticmethod
    def _find(items: builtins.list[dict[str, Any]], objective: int | str) -> int:
        if isinstance(objective, bool) or not isinstance(objective, int | str):
            raise InvalidInput("objective is an index or a description")
        if isinstance(objective, int):
            if not 0 <= objective < len(items):
                raise NotFound(
                    f"the goal has no objective {objective} (it has {len(items)})",
                    details={"objective": objective},
                )
            return objective
        for i, item in enumerate(items):
            if item["description"] == objective:
                return i
        raise NotFound(f"the goal has no objective {objective!r}", details={"objective": objective})

    def delete(self, goal_id: uuid.UUID | str, *, purge: bool = False) -> None:
        self._delete(goal_id, purge=purge)


def _party(kind: str, ident: str, side: str) -> dict[str, str]:
    if kind not in _PARTY_TYPES:
        raise InvalidInput(f"{side}_type must be 'user' or 'agent'", details={f"{side}_type": kind})
    return {f"{side}_{kind}_id": ident}


class Relationships(ResourceService[Relationship]):
    """``db.relationships``: who relates to whom (users and agents), from either side."""

    spec: ResourceSpec[Relationship] = RELATIONSHIPS

    def add(
        self,
        source_id: str,
        target_id: str,
        *,
        source_type: str = "user",
        target_type: str = "agent",
        kind: str = "knows",
        status: str = "active",
        strength: float | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Relationship:
        """A directed relationship; one of each (source, target, kind) at a time (Conflict)."""
        values = {
            **_party(source_type, source_id, "source"),
            **_party(target_type, target_id, "target"),
            "kind": kind, "status": status, "strength": strength, "metadata": metadata or {},
        }  # fmt: skip
        if source_type == target_type and source_id == target_id:
            raise InvalidInput("a relationship needs two different parties")
        checked = self._check(values)
        for col in ("source_user_id", "source_agent_id", "target_user_id", "target_agent_id"):
            if col in checked and not re.match(NAME_ID_PATTERN, str(checked[col])):
                raise InvalidInput(f"{col} {checked[col]!r} is not a valid id")
        checked["id"] = new_id()
        return self._insert(checked)

    def get(self, rel_id: uuid.UUID | str) -> Relationship:
        return self._get(rel_id)

    def list(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        direction: str = "both",
        kind: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Relationship]:
        """Relationships of a user or an agent: ``direction`` ``"out"`` (it is the source),
        ``"in"`` (it is the target) or ``"both"``."""
        if (user_id is None) == (agent_id is None):
            raise InvalidInput("give exactly one of user_id or agent_id")
        if direction not in ("in", "out", "both"):
            raise InvalidInput("direction is 'in', 'out' or 'both'")
        who, ident = ("user", user_id) if user_id is not None else ("agent", agent_id)
        sides = {"out": ("source",), "in": ("target",), "both": ("source", "target")}[direction]
        columns = tuple(f"{s}_{who}_id" for s in sides)
        where = [Where(columns, "eq", ident), *scope_where(kind=kind, status=status)]
        return self._page(where, limit=limit, cursor=cursor)

    def update(self, rel_id: uuid.UUID | str, **changes: Any) -> Relationship:
        """Change ``kind``, ``status``, ``strength`` or ``metadata``."""
        bad = set(changes) - {"kind", "status", "strength", "metadata"}
        if bad:
            raise InvalidInput(f"relationship: unknown fields {sorted(bad)}")
        return self._patch((rel_id,), changes)

    def delete(self, rel_id: uuid.UUID | str, *, purge: bool = False) -> None:
        self._delete(rel_id, purge=purge)
