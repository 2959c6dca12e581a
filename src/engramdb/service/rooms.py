"""Rooms (conversation spaces), their participants, and agents' event logs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..errors import Conflict, InvalidInput, NotFound
from ..filters import parse_time
from ..models import Page, new_id
from ..models.agents import Participant, Room
from ..models.conversation import Log
from ..store.resources import LOGS, PARTICIPANTS, ROOMS, ResourceSpec, Where
from .people import _Named
from .resources import ResourceService, scope_where

__all__ = ["Logs", "Participants", "Rooms"]


def _one_member(user_id: str | None, agent_id: str | None) -> dict[str, Any]:
    if (user_id is None) == (agent_id is None):
        raise InvalidInput("give exactly one of user_id or agent_id")
    return {"user_id": user_id} if user_id is not None else {"agent_id": agent_id}


class Participants(ResourceService[Participant]):
    spec: ResourceSpec[Participant] = PARTICIPANTS


class Rooms(_Named):
    """``db.rooms``: conversation spaces (memory contexts) and who takes part in them."""

    spec: ResourceSpec[Room] = ROOMS
    allowed = ("name", "description", "agent_id", "metadata")

    def add(self, id: str, **fields: Any) -> Room:
        """Create room ``id`` (or set these fields on it): ``name``, ``description``,
        ``agent_id`` (the agent whose context it is), ``metadata``."""
        room: Room = super().add(id, **fields)
        return room

    def list(
        self,
        *,
        agent_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        include_deleted: bool = False,
    ) -> Page[Room]:
        return self._page(
            scope_where(agent_id=agent_id),
            limit=limit,
            cursor=cursor,
            include_deleted=include_deleted,
        )

    @property
    def _members(self) -> Participants:
        return Participants(self._engine, self._org, self._actor)

    def join(
        self,
        room_id: str,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        state: str | None = None,
        joined_at: datetime | str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Participant:
        """Add a user or an agent to a room (both registered on first use); joining twice is
        refused with Conflict."""
        member = _one_member(user_id, agent_id)
        values: dict[str, Any] = {"room_id": room_id, **member, "state": state}
        if joined_at is not None:
            values["joined_at"] = parse_time(joined_at, "joined_at")
        if metadata is not None:
            values["metadata"] = metadata
        svc = self._members
        checked = svc._check(values)
        checked["id"] = new_id()
        try:
            return svc._insert(checked)
        except Conflict:
            raise Conflict(
                f"{next(iter(member.values()))} is already in room {room_id}",
                details={"room_id": room_id, **member},
            ) from None

    def _membership(self, room_id: str, member: dict[str, Any]) -> Participant:
        where = [Where("room_id", "eq", room_id), *scope_where(**member)]
        rows = self._store.list_resources(self._org, PARTICIPANTS, where, limit=1)
        if not rows:
            who = next(iter(member.values()))
            raise NotFound(f"{who} is not in room {room_id}", details={"room_id": room_id})
        found: Participant = rows[0]
        return found

    def leave(
        self, room_id: str, *, user_id: str | None = None, agent_id: str | None = None
    ) -> None:
        """Remove a member (soft: the membership stays in the room's history)."""
        member = _one_member(user_id, agent_id)
        p = self._membership(room_id, member)
        self._store.delete_resource(
            self._org, PARTICIPANTS, (p.id,), purge=False, actor=self._actor
        )

    def set_state(
        self,
        room_id: str,
        state: str | None,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
    ) -> Participant:
        """A member's state in the room (e.g. ``FOLLOWED``, ``MUTED``; ``None`` clears it)."""
        member = _one_member(user_id, agent_id)
        p = self._membership(room_id, member)
        return self._members._patch((p.id,), {"state": state})

    def participants(
        self, room_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page[Participant]:
        """Current members of a room, in the order they joined."""
        return self._members._page([Where("room_id", "eq", room_id)], limit=limit, cursor=cursor)

    def rooms_of(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Participant]:
        """The memberships of a user or an agent (``room_id`` of each)."""
        member = _one_member(user_id, agent_id)
        return self._members._page(scope_where(**member), limit=limit, cursor=cursor)


class Logs(ResourceService[Log]):
    """``db.logs``: what agents did, per room / user / agent (the seeds' ``logs``).

    Not the audit log: these are the agent's own event records, written by the agent.
    """

    spec: ResourceSpec[Log] = LOGS

    def add(
        self,
        type: str,
        body: dict[str, Any] | None = None,
        *,
        agent_id: str | None = None,
        user_id: str | None = None,
        room_id: str | None = None,
    ) -> Log:
        values = self._check(
            {"type": type, "body": body or {}, "agent_id": agent_id, "user_id": user_id,
             "room_id": room_id}
        )  # fmt: skip
        values["id"] = new_id()
        return self._insert(values)

    def get(self, log_id: Any) -> Log:
        return self._get(log_id)

    def list(
        self,
        *,
        agent_id: str | None = None,
        user_id: str | None = None,
        room_id: str | None = None,
        type: str | list[str] | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = True,
    ) -> Page[Log]:
        where = scope_where(agent_id=agent_id, user_id=user_id, room_id=room_id, type=type)
        if since is not None:
            where.append(Where("created_at", "gte", parse_time(since, "since")))
        if until is not None:
            where.append(Where("created_at", "lt", parse_time(until, "until")))
        return self._page(where, limit=limit, cursor=cursor, descending=newest_first)

    def delete(self, log_id: Any, *, purge: bool = False) -> None:
        self._delete(log_id, purge=purge)
