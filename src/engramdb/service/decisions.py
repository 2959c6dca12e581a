"""Decisions and their outcomes, linked to the episodic memory of the decision; summaries."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidInput
from ..models import Page, new_id, utcnow
from ..models.planning import DecisionOutcome, DecisionSummary
from ..store.resources import DECISIONS, ResourceSpec, Where
from .memories import Memories
from .resources import ResourceService, as_uuid, scope_where

__all__ = ["Decisions"]

_OUTCOMES = ("success", "partial", "failure")


class Decisions(ResourceService[DecisionOutcome]):
    """``db.decisions``: what an agent chose, among which alternatives, why, and how it went."""

    spec: ResourceSpec[DecisionOutcome] = DECISIONS

    def record(
        self,
        task_context: str,
        chosen_option: str,
        *,
        alternatives: Sequence[Any] = (),
        reasoning: str = "",
        agent_id: str | None = None,
        user_id: str | None = None,
        room_id: str | None = None,
        memory_id: uuid.UUID | str | None = None,
        importance: float | str = "medium",
        tags: Sequence[str] = (),
        metadata: dict[str, Any] | None = None,
    ) -> DecisionOutcome:
        """Record a decision. Without ``memory_id`` an episodic memory (``event_type``
        ``decision``) is written for it, so the decision is recalled with the agent's other
        memories; with one, that memory must be episodic."""
        values = self._check(
            {"task_context": task_context, "chosen_option": chosen_option,
             "alternatives": list(alternatives), "reasoning": reasoning, "agent_id": agent_id,
             "user_id": user_id, "room_id": room_id, "metadata": metadata or {}}
        )  # fmt: skip
        memories = Memories(self._engine, self._org, self._actor)
        created = None
        if memory_id is not None:
            mem = memories.get(as_uuid(memory_id, "memory_id"))
            if mem.kind != "episodic":
                raise InvalidInput(
                    f"memory {mem.id} is {mem.kind!r}; a decision links to an episodic memory"
                )
            values["memory_id"] = mem.id
        else:
            text = f"Decided: {chosen_option} (for: {task_context})"
            if reasoning:
                text += f" because {reasoning}"
            created = memories.add(
                text, kind="episodic", agent_id=agent_id, user_id=user_id, room_id=room_id,
                importance=importance, tags=list(tags), is_unique=False,
                data={"event_type": "decision", "summary": task_context,
                      "decision": chosen_option,
                      "details": {"alternatives": list(alternatives), "reasoning": reasoning}},
            )  # fmt: skip
            values["memory_id"] = created.id
        values["id"] = new_id()
        try:
            return self._insert(values)
        except BaseException:
            if created is not None:
                memories.delete(created.id, purge=True)
            raise

    def resolve(
        self,
        decision_id: uuid.UUID | str,
        outcome_status: str,
        *,
        outcome_details: dict[str, Any] | None = None,
        lessons_learned: str | None = None,
        user_feedback: str | None = None,
    ) -> DecisionOutcome:
        """Record how it went: ``success``, ``partial`` or ``failure`` (sets ``resolved_at``)."""
        if outcome_status not in _OUTCOMES:
            raise InvalidInput(
                f"outcome_status must be one of {list(_OUTCOMES)}",
                details={"outcome_status": outcome_status},
            )
        changes: dict[str, Any] = {"outcome_status": outcome_status}
        if outcome_details is not None:
            changes["outcome_details"] = outcome_details
        if lessons_learned is not None:
            changes["lessons_learned"] = lessons_learned
        if user_feedback is not None:
            changes["user_feedback"] = user_feedback
        current = self._get(decision_id)
        checked = self._check(changes, current)
        checked["resolved_at"] = utcnow()
        return self._update((current.id,), checked, expect_version=current.version)

    def feedback(self, decision_id: uuid.UUID | str, user_feedback: str) -> DecisionOutcome:
        """The user's verdict: ``positive``, ``negative`` or ``neutral``."""
        return self._patch((decision_id,), {"user_feedback": user_feedback})

    def get(self, decision_id: uuid.UUID | str) -> DecisionOutcome:
        return self._get(decision_id)

    def list(
        self,
        *,
        agent_id: str | None = None,
        user_id: str | None = None,
        outcome_status: str | Sequence[str] | None = None,
        memory_id: uuid.UUID | str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = True,
    ) -> Page[DecisionOutcome]:
        where = scope_where(agent_id=agent_id, user_id=user_id, outcome_status=outcome_status)
        if memory_id is not None:
            where.append(Where("memory_id", "eq", as_uuid(memory_id, "memory_id")))
        return self._page(where, limit=limit, cursor=cursor, descending=newest_first)

    def summary(self, *, agent_id: str | None = None) -> builtins.list[DecisionSummary]:
        """Per agent: decisions by outcome and the success rate over resolved ones (a partial
        success counts half)."""
        counts = self._store.count_resources(
            self._org, self.spec, scope_where(agent_id=agent_id),
            group_by=("agent_id", "outcome_status"),
        )  # fmt: skip
        per: dict[str | None, dict[str, int]] = {}
        for (agent, status), n in counts:
            per.setdefault(agent, {})[status] = n
        out = []
        for agent in sorted(per, key=lambda a: (a is None, a or "")):
            c = per[agent]
            resolved = sum(c.get(s, 0) for s in _OUTCOMES)
            rate = None
            if resolved:
                rate = (c.get("success", 0) + 0.5 * c.get("partial", 0)) / resolved
            out.append(
                DecisionSummary(
                    agent_id=agent,
                    total=sum(c.values()),
                    pending=c.get("pending", 0),
                    success=c.get("success", 0),
                    partial=c.get("partial", 0),
                    failure=c.get("failure", 0),
                    success_rate=rate,
                )
            )
        return out

    def delete(self, decision_id: uuid.UUID | str, *, purge: bool = False) -> None:
        self._delete(decision_id, purge=purge)
