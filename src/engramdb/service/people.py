"""Users and agents (caller-named, registered on first use) and agents' memory configuration."""

from __future__ import annotations

import time
from typing import Any

from ..errors import InvalidInput
from ..models import Page
from ..models.agents import Agent, AgentMemoryConfig, User
from ..store.resources import AGENT_CONFIG, AGENTS, USERS, ResourceSpec
from .engine import Engine
from .resources import ResourceService, scope_where

__all__ = ["Agents", "Users", "agent_config_known", "load_agent_config"]

_USER_FIELDS = ("name", "username", "email", "avatar_url", "status", "timezone", "details",
                "metadata")  # fmt: skip
_AGENT_FIELDS = ("name", "agent_type", "description", "system_prompt", "topic", "llm_config",
                 "embedding_config", "tool_rules", "metadata")  # fmt: skip
_CONFIG_FIELDS = frozenset(AgentMemoryConfig.model_fields) - {
    "organization_id", "agent_id", "created_at", "updated_at", "created_by_id",
    "last_updated_by_id", "deleted_at",
}  # fmt: skip


def _fields(allowed: tuple[str, ...] | frozenset[str], given: dict[str, Any], what: str) -> None:
    unknown = set(given) - set(allowed)
    if unknown:
        raise InvalidInput(
            f"{what}: unknown fields {sorted(unknown)}", details={"allowed": sorted(allowed)}
        )


class _Named(ResourceService[Any]):
    """Resources whose id is the caller's own string: add is create-or-update."""

    allowed: tuple[str, ...] = ()

    def add(self, id: str, **fields: Any) -> Any:
        """Create ``id`` with these fields, or set them on the existing one (ids registered on
        first use by a memory or message are filled in this way; a deleted one is restored)."""
        _fields(self.allowed, fields, self.spec.name)
        values = self._check({"id": id, **fields})
        return self._store.upsert_resource(self._org, self.spec, values, actor=self._actor)

    def get(self, id: str, *, include_deleted: bool = False) -> Any:
        return self._get(id, include_deleted=include_deleted)

    def update(self, id: str, **changes: Any) -> Any:
        _fields(self.allowed, changes, self.spec.name)
        return self._patch((id,), changes)

    def delete(self, id: str, *, purge: bool = False) -> None:
        """Soft delete (hidden, restorable with :meth:`add`), or ``purge=True``: the row and
        everything that belongs to it (memories, messages, blocks links, goals, …) are gone."""
        self._delete(id, purge=purge)
        _forget_agent_config(self._engine, self._org, id)


class Users(_Named):
    """``db.users``: people agents talk to."""

    spec: ResourceSpec[User] = USERS
    allowed = _USER_FIELDS

    def add(self, id: str, **fields: Any) -> User:
        user: User = super().add(id, **fields)
        return user

    def list(
        self,
        *,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        include_deleted: bool = False,
    ) -> Page[User]:
        """Users by id, ``limit`` at a time."""
        return self._page(
            scope_where(status=status), limit=limit, cursor=cursor, include_deleted=include_deleted
        )


class Agents(_Named):
    """``db.agents``: agents, and their memory configuration (:meth:`config`)."""

    spec: ResourceSpec[Agent] = AGENTS
    allowed = _AGENT_FIELDS

    def add(self, id: str, **fields: Any) -> Agent:
        agent: Agent = super().add(id, **fields)
        return agent

    def list(
        self,
        *,
        agent_type: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        include_deleted: bool = False,
    ) -> Page[Agent]:
        return self._page(
            scope_where(agent_type=agent_type),
            limit=limit,
            cursor=cursor,
            include_deleted=include_deleted,
        )

    def config(self, agent_id: str) -> AgentMemoryConfig:
        """The agent's memory configuration; fields left ``None`` use the engine's defaults."""
        found = load_agent_config(self._engine, self._org, agent_id)
        if found is not None:
            return found
        return AgentMemoryConfig(organization_id=self._org, agent_id=agent_id)

    def set_config(self, agent_id: str, **fields: Any) -> AgentMemoryConfig:
        """Set configuration fields (``None`` clears one back to the default): ``vector_weight``,
        ``text_weight``, ``recency_weight``, ``importance_weight``, ``half_life_days``,
        ``fusion``, ``top_k``, ``threshold``, ``dedup_threshold``, ``embedding_model``,
        ``retention_days``, ``block_char_limit``, ``max_blocks``, ``metadata``."""
        _fields(_CONFIG_FIELDS, fields, "agent memory config")
        if not fields:
            raise InvalidInput("set_config needs at least one field")
        service = _ConfigService(self._engine, self._org, self._actor)
        values = service._check({"agent_id": agent_id, **fields})
        cfg: AgentMemoryConfig = service._store.upsert_resource(
            self._org, AGENT_CONFIG, values, actor=self._actor
        )
        _forget_agent_config(self._engine, self._org, agent_id)
        return cfg

    def reset_config(self, agent_id: str) -> None:
        """Back to the engine's defaults for every field."""
        self._store.delete_resource(self._org, AGENT_CONFIG, (agent_id,), purge=True, actor=None)
        _forget_agent_config(self._engine, self._org, agent_id)


class _ConfigService(ResourceService[AgentMemoryConfig]):
    spec = AGENT_CONFIG


#: An organization with at most this many configured agents has all of them read in one
#: statement and remembered together: most agents have no configuration, and looking each one up
#: cost a round trip on the first add or search naming it in every period -- on nearly every add
#: for 1,000 agents sharing a few hundred adds a second.
SNAPSHOT_MAX_AGENTS = 1_000


def load_agent_config(engine: Engine, org: str, agent_id: str) -> AgentMemoryConfig | None:
    """The stored configuration of one agent, or ``None`` (used by search and add).

    Remembered per engine for ``settings.agent_config_cache_seconds``: an add or a search then
    costs no extra round trip. Changes made through this engine apply at once; changes made by
    another process show up within that time. Up to :data:`SNAPSHOT_MAX_AGENTS` configured
    agents, the organization's configurations are read together (one read per period whatever
    the number of agents); beyond, one agent at a time.
    """
    ttl = engine.settings.agent_config_cache_seconds
    if ttl <= 0:
        return _read_agent_config(engine, org, agent_id)
    now = time.monotonic()
    known, cfg = _remembered(engine, org, agent_id, now)
    if known:
        return cfg
    snap = engine.config_snapshots.get(org)
    if snap is None or snap[0] <= now:
        found = engine.store.list_resources(org, AGENT_CONFIG, [], limit=SNAPSHOT_MAX_AGENTS + 1)
        table = {c.agent_id: c for c in found} if len(found) <= SNAPSHOT_MAX_AGENTS else None
        if len(engine.config_snapshots) >= 10_000:
            engine.config_snapshots.clear()  # bounded; a refill costs one read per organization
        engine.config_snapshots[org] = (now + ttl, table)
        known, cfg = _remembered(engine, org, agent_id, now)
        if known:
            return cfg
    cfg = _read_agent_config(engine, org, agent_id)
    if len(engine.config_cache) >= 10_000:
        engine.config_cache.clear()  # bounded; a refill costs one read per agent
    engine.config_cache[(org, agent_id)] = (now + ttl, cfg)
    return cfg


def agent_config_known(engine: Engine, org: str, agent_id: str) -> bool:
    """Whether :func:`load_agent_config` would answer from what it remembers, without a read
    (an event loop's search asks first: ``Memories.search_async``)."""
    if engine.settings.agent_config_cache_seconds <= 0:
        return False
    return _remembered(engine, org, agent_id, time.monotonic())[0]


def _remembered(
    engine: Engine, org: str, agent_id: str, now: float
) -> tuple[bool, AgentMemoryConfig | None]:
    """``(True, configuration or None)`` when the organization's snapshot, or else the agent's
    own entry, still holds at ``now``; ``(False, None)`` when a read is due."""
    snap = engine.config_snapshots.get(org)
    if snap is None or snap[0] <= now:
        return False, None
    if snap[1] is not None:
        return True, snap[1].get(agent_id)
    hit = engine.config_cache.get((org, agent_id))
    if hit is not None and hit[0] > now:
        return True, hit[1]
    return False, None


def _read_agent_config(engine: Engine, org: str, agent_id: str) -> AgentMemoryConfig | None:
    from ..errors import NotFound

    try:
        return engine.store.get_resource(org, AGENT_CONFIG, (agent_id,))
    except NotFound:
        return None


def _forget_agent_config(engine: Engine, org: str, agent_id: str) -> None:
    engine.config_cache.pop((org, agent_id), None)
    engine.config_snapshots.pop(org, None)
