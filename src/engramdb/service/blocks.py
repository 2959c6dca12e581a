"""Core memory blocks (limits, edits, history, rendering) and tools, both shared by agents."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import Conflict, InvalidInput, LimitExceeded
from ..models import Page, new_id
from ..models.blocks import AgentBlock, AgentTool, Block, ResourceVersion, Tool
from ..store.resources import AGENT_BLOCKS, AGENT_TOOLS, BLOCKS, TOOLS, ResourceSpec, Where
from .people import load_agent_config
from .resources import ResourceService, scope_where

__all__ = ["Blocks", "Tools"]

DEFAULT_BLOCK_LIMIT = 2000
DEFAULT_MAX_BLOCKS = 32
_EDIT_RETRIES = 5
_BLOCK_FIELDS = frozenset(
    {"label", "value", "limit", "description", "is_template", "template_name", "read_only",
     "user_id", "metadata"}
)  # fmt: skip


def _over_limit(block_label: str, value: str, limit: int) -> LimitExceeded:
    return LimitExceeded(
        f"block {block_label!r} would hold {len(value)} characters; its limit is {limit}. "
        "Nothing was changed: shorten the text or raise the block's limit",
        details={"label": block_label, "length": len(value), "limit": limit},
    )


class Blocks(ResourceService[Block]):
    """``db.blocks``: core memory an agent always sees (``human``, ``persona``, ``system``, …).

    A write over a block's character limit is refused with :class:`LimitExceeded` and changes
    nothing; every edit keeps the previous value in :meth:`history`.
    """

    spec: ResourceSpec[Block] = BLOCKS

    def add(
        self, label: str, value: str = "", *, agent_id: str | None = None, **fields: Any
    ) -> Block:
        """Create a block; ``fields``: ``limit`` (characters; default: the agent's configured
        ``block_char_limit``, else 2000), ``description``, ``is_template``, ``template_name``,
        ``read_only``, ``user_id``, ``metadata``. With ``agent_id`` it is attached at once."""
        bad = set(fields) - _BLOCK_FIELDS
        if bad:
            raise InvalidInput(f"block: unknown fields {sorted(bad)}")
        values: dict[str, Any] = {"label": label, "value": value, **fields}
        if fields.get("limit") is None:
            values.pop("limit", None)
            cfg = None if agent_id is None else load_agent_config(self._engine, self._org, agent_id)
            values["limit"] = (cfg.block_char_limit if cfg else None) or DEFAULT_BLOCK_LIMIT
        if (
            isinstance(value, str)
            and isinstance(values["limit"], int)
            and len(value) > values["limit"]
        ):
            raise _over_limit(label, value, values["limit"])
        checked = self._check(values)
        checked["id"] = new_id()
        if agent_id is not None:
            self._check_can_attach(agent_id, checked["label"])
        block = self._insert(checked)
        if agent_id is not None:
            try:
                self.attach(block.id, agent_id)
            except BaseException:
                self._delete(block.id, purge=True)
                raise
        return block

    def get(self, block_id: uuid.UUID | str, *, include_deleted: bool = False) -> Block:
        return self._get(block_id, include_deleted=include_deleted)

    def list(
        self,
        *,
        label: str | None = None,
        is_template: bool | None = None,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        include_deleted: bool = False,
    ) -> Page[Block]:
        where = scope_where(label=label, is_template=is_template, user_id=user_id)
        return self._page(where, limit=limit, cursor=cursor, include_deleted=include_deleted)

    def update(self, block_id: uuid.UUID | str, **changes: Any) -> Block:
        """Change any field; a ``value`` or ``limit`` that would not fit is refused."""
        bad = set(changes) - _BLOCK_FIELDS
        if bad:
            raise InvalidInput(f"block: unknown fields {sorted(bad)}")
        current = self._get(block_id)
        if "value" in changes and current.read_only and changes.get("read_only") is not False:
            raise self._read_only(current)
        value = changes.get("value", current.value)
        limit = changes.get("limit", current.limit)
        if isinstance(value, str) and isinstance(limit, int) and len(value) > limit:
            raise _over_limit(current.label, value, limit)
        checked = self._check(changes, current)
        if "label" in checked and checked["label"] != current.label:
            for agent_id in self.agents(current.id):
                self._check_can_attach(agent_id, checked["label"], ignore=current.id)
        return self._update((current.id,), checked, expect_version=current.version)

    # -- edits, as an agent makes them -------------------------------------------------------------

    @staticmethod
    def _read_only(block: Block) -> Conflict:
        return Conflict(
            f"block {block.label!r} is read-only",
            details={"id": str(block.id), "label": block.label},
        )

    def _edit(self, block_id: uuid.UUID | str, event: str, change: Callable[[str], str]) -> Block:
        """Read, change, write if the block did not change meanwhile (else read again)."""
        for _ in range(_EDIT_RETRIES):
            current = self._get(block_id)
            if current.read_only:
                raise self._read_only(current)
            value = change(current.value)
            if len(value) > current.limit:
                raise _over_limit(current.label, value, current.limit)
            self._check_sizes({"value": value}, "block")
            try:
                return self._update(
                    (current.id,), {"value": value}, expect_version=current.version, event=event
                )
            except Conflict as exc:
                if "version" not in exc.details:
                    raise
        raise Conflict("the block keeps changing; try again", details={"id": str(block_id)})

    def replace(self, block_id: uuid.UUID | str, value: str) -> Block:
        """Set the whole value."""
        return self._edit(block_id, "replace", lambda _old: value)

    def append(self, block_id: uuid.UUID | str, text: str, *, separator: str = "\n") -> Block:
        """Add ``text`` at the end (after ``separator`` when the block is not empty)."""
        if not text:
            raise InvalidInput("append needs some text")
        return self._edit(
            block_id, "append", lambda old: f"{old}{separator}{text}" if old else text
        )

    def str_replace(self, block_id: uuid.UUID | str, old: str, new: str) -> Block:
        """Replace the one exact occurrence of ``old`` with ``new``; refused when ``old`` does
        not occur, or occurs more than once (say more, so the edit is unambiguous)."""
        if not old:
            raise InvalidInput("str_replace needs the text to replace")

        def change(value: str) -> str:
            n = value.count(old)
            if n != 1:
                raise InvalidInput(
                    f"the text to replace occurs {n} times in the block; it must occur exactly once",
                    details={"occurrences": n},
                )
            return value.replace(old, new, 1)

        return self._edit(block_id, "str_replace", change)

    def history(self, block_id: uuid.UUID | str) -> builtins.list[ResourceVersion]:
        """Every value the block had, oldest first; the last entry is the current one."""
        versions: builtins.list[ResourceVersion] = self._store.resource_history(
            self._org, self.spec, self._key(block_id)
        )
        return versions

    def delete(self, block_id: uuid.UUID | str, *, purge: bool = False) -> None:
        self._delete(block_id, purge=purge)

    # -- agents ------------------------------------------------------------------------------------

    def _check_can_attach(self, agent_id: str, label: str, ignore: uuid.UUID | None = None) -> None:
        current = [b for b in self.for_agent(agent_id) if b.id != ignore]
        if any(b.label == label for b in current):
            raise Conflict(
                f"agent {agent_id} already has a {label!r} block",
                details={"agent_id": agent_id, "label": label},
            )
        cfg = load_agent_config(self._engine, self._org, agent_id)
        cap = (cfg.max_blocks if cfg else None) or DEFAULT_MAX_BLOCKS
        if len(current) >= cap:
            raise LimitExceeded(
                f"agent {agent_id} has {len(current)} blocks; its limit is {cap}",
                details={"agent_id": agent_id, "limit": cap},
            )

    def attach(self, block_id: uuid.UUID | str, agent_id: str) -> AgentBlock:
        """Give an agent this block (one block per label per agent; blocks can be shared)."""
        block = self._get(block_id)
        if agent_id in self.agents(block.id):
            raise Conflict(f"block {block.id} is already attached to {agent_id}")
        self._check_can_attach(agent_id, block.label)
        [link] = self._store.insert_resources(
            self._org,
            AGENT_BLOCKS,
            [{"agent_id": agent_id, "block_id": block.id}],
            actor=self._actor,
        )
        found: AgentBlock = link
        return found

    def detach(self, block_id: uuid.UUID | str, agent_id: str) -> None:
        self._store.delete_resource(
            self._org, AGENT_BLOCKS, (agent_id, self._key(block_id)[0]), purge=True, actor=None
        )

    def agents(self, block_id: uuid.UUID | str) -> builtins.list[str]:
        """Ids of the agents that share this block."""
        links: builtins.list[AgentBlock] = self._store.list_resources(
            self._org, AGENT_BLOCKS, [Where("block_id", "eq", self._key(block_id)[0])], limit=10_000
        )
        return [link.agent_id for link in links]

    def for_agent(self, agent_id: str) -> builtins.list[Block]:
        """The agent's blocks, by label."""
        links: builtins.list[AgentBlock] = self._store.list_resources(
            self._org, AGENT_BLOCKS, [Where("agent_id", "eq", agent_id)], limit=1000
        )
        if not links:
            return []
        blocks: builtins.list[Block] = self._store.list_resources(
            self._org, self.spec, [Where("id", "in", [link.block_id for link in links])], limit=1000
        )
        return sorted(blocks, key=lambda b: b.label)

    def render(self, agent_id: str) -> str:
        """The agent's blocks as the text an LLM prompt includes, one tagged section per label."""
        parts = []
        for b in self.for_agent(agent_id):
            desc = f' description="{b.description}"' if b.description else ""
            parts.append(
                f'<{b.label} characters="{len(b.value)}/{b.limit}"{desc}>\n{b.value}\n</{b.label}>'
            )
        return "\n".join(parts)


class Tools(ResourceService[Tool]):
    """``db.tools``: tools agents can call (name unique per organization)."""

    spec: ResourceSpec[Tool] = TOOLS
    _FIELDS = frozenset(
        {"name", "description", "json_schema", "source_type", "source_code", "tags", "metadata"}
    )

    def add(self, name: str, *, agent_id: str | None = None, **fields: Any) -> Tool:
        """Create a tool; ``fields``: ``description``, ``json_schema``, ``source_type``,
        ``source_code``, ``tags``, ``metadata``. With ``agent_id`` it is attached at once."""
        bad = set(fields) - self._FIELDS
        if bad:
            raise InvalidInput(f"tool: unknown fields {sorted(bad)}")
        checked = self._check({"name": name, **fields})
        checked["id"] = new_id()
        tool = self._insert(checked)
        if agent_id is not None:
            self.attach(tool.id, agent_id)
        return tool

    def get(self, tool_id: uuid.UUID | str, *, include_deleted: bool = False) -> Tool:
        return self._get(tool_id, include_deleted=include_deleted)

    def get_by_name(self, name: str) -> Tool:
        rows: builtins.list[Tool] = self._store.list_resources(
            self._org, self.spec, [Where("name", "eq", name)], limit=1
        )
        if not rows:
            from ..errors import NotFound

            raise NotFound(f"tool {name!r} not found", details={"name": name})
        return rows[0]

    def list(self, *, limit: int = 50, cursor: str | None = None) -> Page[Tool]:
        return self._page([], limit=limit, cursor=cursor)

    def update(self, tool_id: uuid.UUID | str, **changes: Any) -> Tool:
        bad = set(changes) - self._FIELDS
        if bad:
            raise InvalidInput(f"tool: unknown fields {sorted(bad)}")
        return self._patch((tool_id,), changes)

    def delete(self, tool_id: uuid.UUID | str, *, purge: bool = False) -> None:
        self._delete(tool_id, purge=purge)

    def attach(self, tool_id: uuid.UUID | str, agent_id: str) -> AgentTool:
        tool = self._get(tool_id)
        [link] = self._store.insert_resources(
            self._org, AGENT_TOOLS, [{"agent_id": agent_id, "tool_id": tool.id}], actor=self._actor
        )
        found: AgentTool = link
        return found

    def detach(self, tool_id: uuid.UUID | str, agent_id: str) -> None:
        self._store.delete_resource(
            self._org, AGENT_TOOLS, (agent_id, self._key(tool_id)[0]), purge=True, actor=None
        )

    def for_agent(self, agent_id: str) -> builtins.list[Tool]:
        """The agent's tools, by name."""
        links: builtins.list[AgentTool] = self._store.list_resources(
            self._org, AGENT_TOOLS, [Where("agent_id", "eq", agent_id)], limit=1000
        )
        if not links:
            return []
        tools: builtins.list[Tool] = self._store.list_resources(
            self._org, self.spec, [Where("id", "in", [link.tool_id for link in links])], limit=1000
        )
        return sorted(tools, key=lambda t: t.name)
