"""Facts that change over time (supersede) and links between memories, followed both ways."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import Conflict, InvalidInput, NotFound
from ..filters import parse_time
from ..models import Memory, utcnow
from ..models.planning import MemoryLink
from ..store.resources import MEMORY_LINKS, Where
from .resources import ResourceService, as_uuid

if TYPE_CHECKING:
    from .memories import Memories

__all__ = ["SUPERSEDES", "MemoryGraph"]

SUPERSEDES = "supersedes"
_DIRECTIONS = ("out", "in", "both")


class _Links(ResourceService[MemoryLink]):
    spec = MEMORY_LINKS


class MemoryGraph:
    """The links of one organization's memories, and supersession of facts."""

    def __init__(self, memories: Memories) -> None:
        self._mem = memories
        self._links = _Links(memories._engine, memories._org, memories._actor)

    # -- links ----------------------------------------------------------------------------------

    def link(
        self,
        source_id: uuid.UUID | str,
        target_id: uuid.UUID | str,
        kind: str = "related",
        metadata: dict[str, Any] | None = None,
    ) -> MemoryLink:
        src, dst = as_uuid(source_id, "source_id"), as_uuid(target_id, "target_id")
        if src == dst:
            raise InvalidInput("a memory cannot link to itself")
        values = self._links._check(
            {"source_id": src, "target_id": dst, "kind": kind, "metadata": metadata or {}}
        )
        self._mem._engine.store.get_memory(self._mem._org, src)
        self._mem._engine.store.get_memory(self._mem._org, dst)
        try:
            return self._links._insert(values)
        except Conflict:
            raise Conflict(
                f"memory {src} already links to {dst} as {kind!r}",
                details={"source_id": str(src), "target_id": str(dst), "kind": kind},
            ) from None

    def unlink(
        self, source_id: uuid.UUID | str, target_id: uuid.UUID | str, kind: str = "related"
    ) -> None:
        self._links._delete(source_id, target_id, kind, purge=True)

    def links(
        self, memory_id: uuid.UUID | str, *, direction: str = "both", kind: str | None = None
    ) -> list[MemoryLink]:
        """Links from (``out``), to (``in``) or both ways around a memory."""
        if direction not in _DIRECTIONS:
            raise InvalidInput(f"direction must be one of {list(_DIRECTIONS)}")
        mid = as_uuid(memory_id)
        cols = {"out": ("source_id",), "in": ("target_id",), "both": ("source_id", "target_id")}
        where = [Where(cols[direction], "eq", mid)]
        if kind is not None:
            where.append(Where("kind", "eq", kind))
        found: list[MemoryLink] = self._mem._engine.store.list_resources(
            self._mem._org, MEMORY_LINKS, where, limit=self._mem._limits.max_page
        )
        return found

    def related(
        self,
        memory_id: uuid.UUID | str,
        *,
        direction: str = "both",
        kind: str | None = None,
        include_invalid: bool = True,
    ) -> list[Memory]:
        """The memories linked to this one (either way by default), live ones only; facts
        that were superseded are included unless ``include_invalid=False``."""
        mid = as_uuid(memory_id)
        others: list[uuid.UUID] = []
        for link in self.links(mid, direction=direction, kind=kind):
            other = link.target_id if link.source_id == mid else link.source_id
            if other not in others:
                others.append(other)
        now = utcnow()
        out = []
        for other in others:
            try:
                m = self._mem._engine.store.get_memory(self._mem._org, other)
            except NotFound:
                continue
            if include_invalid or m.valid_to is None or m.valid_to > now:
                out.append(m)
        return out

    # -- facts over time --------------------------------------------------------------------------

    def check_supersedable(self, old_id: uuid.UUID | str, at: datetime) -> Memory:
        old = self._mem._engine.store.get_memory(self._mem._org, as_uuid(old_id, "supersedes"))
        if old.valid_to is not None and old.valid_to <= at:
            raise Conflict(
                f"memory {old.id} stopped being valid at {old.valid_to.isoformat()}; supersede "
                "the fact that replaced it",
                details={"id": str(old.id), "valid_to": old.valid_to.isoformat()},
            )
        if old.valid_from is not None and old.valid_from >= at:
            raise InvalidInput(
                f"the new fact must start after the old one ({old.valid_from.isoformat()})",
                details={"valid_from": old.valid_from.isoformat()},
            )
        return old

    def close(self, old: Memory, new: Memory, at: datetime) -> None:
        """End the old fact where the new one starts, and link new → old."""
        if new.id == old.id:
            raise InvalidInput("a fact cannot supersede itself (the content is the same)")
        try:
            self._mem._engine.store.update_memory(
                self._mem._org, old.id, {"valid_to": at}, actor=self._mem._actor,
                event="supersede",
            )  # fmt: skip
            self.link(new.id, old.id, SUPERSEDES)
        except BaseException:
            # Do not leave a second "current" fact behind when closing the old one failed.
            self._mem._engine.store.delete_memory(
                self._mem._org, new.id, purge=True, actor=self._mem._actor
            )
            raise

    def supersede(
        self,
        old_id: uuid.UUID | str,
        content: str,
        *,
        valid_from: datetime | str | None = None,
        **fields: Any,
    ) -> Memory:
        """A new version of a fact: same kind and scope as the old one (``fields`` may change
        ``tags``, ``data``, ``importance``, …), valid from ``valid_from`` (default now)."""
        at = utcnow() if valid_from is None else parse_time(valid_from, "valid_from")
        old = self.check_supersedable(old_id, at)
        inherited: dict[str, Any] = {
            "kind": old.kind, "agent_id": old.agent_id, "user_id": old.user_id,
            "room_id": old.room_id, "tags": old.tags, "data": old.data,
            "importance": old.importance, "metadata": old.metadata, "scope": old.scope,
            "level": old.level,
        }  # fmt: skip
        inherited.update(fields)
        return self._mem.add(content, supersedes=old.id, valid_from=at, **inherited)

    def validate_related(self, ids: Sequence[uuid.UUID]) -> None:
        for rid in ids:
            self._mem._engine.store.get_memory(self._mem._org, rid)
