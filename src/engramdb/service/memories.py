"""Memories: add, batch, get, list, update, delete, history and search, with their rules."""

from __future__ import annotations

import asyncio
import builtins
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
from pydantic import ValidationError

from ..errors import EngramError, InvalidInput, LimitExceeded
from ..filters import Filter, combine, parse_filter, parse_time, scope_filter
from ..models import Memory, MemoryInput, MemoryVersion, Page, SearchHit, new_id, utcnow
from ..models.common import json_size
from ..models.kinds import validate_kind_data
from ..models.planning import MemoryLink
from ..models.security import AuditEntry
from ..scoring import (
    Candidate,
    Weights,
    distance_to_similarity,
    fuse,
    one_list,
    text_rank_to_score,
)
from ..store.base import MemoryQuery, NewMemory, RawHit, SearchSpec
from .engine import Engine, content_hash, invalid_from_validation
from .facts import MemoryGraph
from .pagination import decode_cursor, encode_cursor, listing_key

__all__ = ["Memories", "MemoryAudit"]

_MODES = ("hybrid", "vector", "text")
_METRICS = ("cosine", "l2", "ip")
_UPDATABLE = {
    "content", "kind", "data", "importance", "tags", "metadata", "scope", "level",
    "related_ids", "valid_from", "valid_to", "expires_at", "embedding",
}  # fmt: skip


def _as_uuid(value: uuid.UUID | str, what: str = "id") -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidInput(
            f"{what} {value!r} is not a valid id", details={what: str(value)}
        ) from None


class MemoryAudit(Protocol):
    """The audit log entries of a :class:`Memories`' changes (the server's: one per request)."""

    def created(self, memory_id: uuid.UUID) -> AuditEntry:
        """The entry of a memory about to be inserted with this id (version 1)."""
        ...

    def updated(self, memory: Memory) -> AuditEntry:
        """The entry of a change, given the memory as the change left it."""
        ...

    def deleted(self, memory_id: uuid.UUID, purge: bool) -> AuditEntry:
        """The entry of a soft delete, or of a purge."""
        ...


class Memories:
    """``db.memories``: the memory API of one organization."""

    def __init__(
        self,
        engine: Engine,
        organization: str,
        actor: str | None = None,
        *,
        audit: MemoryAudit | None = None,
    ) -> None:
        """``audit``: the audit log entries of what :meth:`add`, :meth:`update` and
        :meth:`delete` change, each written in the change's own transaction (the server's: a
        change over HTTP is one durable commit, and never a change without its entry). An add
        that finds a duplicate, and an update that changes nothing, write none."""
        self._engine = engine
        self._org = organization
        self._actor = actor
        self._audit = audit

    @property
    def _limits(self) -> Any:
        return self._engine.settings.limits

    # -- writes -------------------------------------------------------------------------------

    def _prepare(
        self,
        item: MemoryInput | Mapping[str, Any],
        index: int | None = None,
        label: str | None = None,
    ) -> MemoryInput:
        # ``label`` names the item in errors instead of its index (an import's "line 17").
        where = label or ("memory" if index is None else f"item {index}")
        try:
            data = item if isinstance(item, MemoryInput) else MemoryInput.model_validate(item)
        except ValidationError as exc:
            err = invalid_from_validation(exc, where)
            if index is not None:
                err.details["index"] = index
            raise err from None
        try:  # per-kind structure of ``data`` (episodic events, semantic facts)
            kind_data = validate_kind_data(data.kind, data.data)
        except ValidationError as exc:
            raise invalid_from_validation(exc, f"{where}: {data.kind} data") from None
        if kind_data != data.data:  # a copy per item is measurable in bulk imports
            data = data.model_copy(update={"data": kind_data})
        lim = self._limits
        content = data.content.strip()
        if not content:
            raise InvalidInput(f"{where}: content must not be empty", details={"index": index})
        if len(data.content) > lim.max_content_chars:
            raise LimitExceeded(
                f"{where}: content has {len(data.content)} characters; the limit is "
                f"{lim.max_content_chars}",
                details={"index": index, "limit": lim.max_content_chars},
            )
        _check_json_size(data.metadata, "metadata", lim.max_metadata_bytes, where)
        _check_json_size(data.data, "data", lim.max_metadata_bytes, where)
        if len(data.tags) > lim.max_tags or any(
            not t or len(t) > lim.max_tag_chars for t in data.tags
        ):
            raise LimitExceeded(
                f"{where}: at most {lim.max_tags} tags of 1 to {lim.max_tag_chars} characters",
                details={"index": index},
            )
        if data.valid_from and data.valid_to and data.valid_to <= data.valid_from:
            raise InvalidInput(
                f"{where}: valid_to must be after valid_from", details={"index": index}
            )
        return data

    def _prepare_vector(
        self,
        item: MemoryInput | Mapping[str, Any],
        index: int | None = None,
        label: str | None = None,
    ) -> tuple[MemoryInput, np.ndarray | None]:
        """:meth:`_prepare` with the caller's vector taken aside and checked against the
        embedding space by itself (``None``: none given, to be embedded). The model would
        validate a vector float by float (a numpy one copied into a list of numpy scalars
        first), and check_vector reads it again anyway: 60-100 µs of an add at 384 dimensions.
        A vector refused in a batch names its item and has its ``index`` in the details."""
        given = None
        if isinstance(item, MemoryInput):
            given = item.embedding
        elif item.get("embedding") is not None:
            item = dict(item)
            given = item.pop("embedding")
        data = self._prepare(item, index, label)
        if given is None:
            return data, None
        where = label or (None if index is None else f"item {index}")
        try:
            vector = self._engine.check_vector(
                given, "embedding" if where is None else f"{where}: embedding"
            )
        except EngramError as err:
            if index is not None:
                err.details["index"] = index
            raise
        return data, vector

    def _to_new(self, data: MemoryInput, vector: np.ndarray | None) -> NewMemory:
        return NewMemory(
            id=new_id(),
            kind=data.kind,
            content=data.content,
            content_hash=content_hash(data.content),
            agent_id=data.agent_id,
            user_id=data.user_id,
            room_id=data.room_id,
            data=data.data,
            importance=0.5 if data.importance is None else data.importance,
            tags=list(dict.fromkeys(data.tags)),
            metadata=data.metadata,
            scope=data.scope,
            level=data.level,
            is_unique=data.is_unique,
            related_ids=data.related_ids,
            valid_from=data.valid_from,
            valid_to=data.valid_to,
            expires_at=data.expires_at,
            embedding_model=None if vector is None else self._engine.embedder.model,
            embedding=vector,
            created_at=data.created_at,
        )

    def add(
        self,
        content: str,
        *,
        agent_id: str | None = None,
        user_id: str | None = None,
        room_id: str | None = None,
        kind: str = "semantic",
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        importance: float | str | None = None,
        data: Mapping[str, Any] | None = None,
        embedding: Sequence[float] | None = None,
        is_unique: bool = True,
        dedup_threshold: float | None = None,
        scope: str | None = None,
        level: str | None = None,
        related_ids: Sequence[uuid.UUID | str] | None = None,
        valid_from: datetime | str | None = None,
        valid_to: datetime | str | None = None,
        expires_at: datetime | str | None = None,
        created_at: datetime | str | None = None,
        supersedes: uuid.UUID | str | None = None,
    ) -> Memory:
        """Store one memory and return it (or the existing identical one, when ``is_unique``).

        ``dedup_threshold`` (a similarity in [0, 1]) also treats a memory in the same scope whose
        vector is at least that similar as a duplicate, and returns it instead of writing; it
        defaults to the agent's configured one. ``supersedes``: the id of the fact this one
        replaces; the old one stops being valid where this one starts (``valid_from``, default
        now) and the two are linked (:meth:`supersede` inherits the old fact's scope).
        """
        graph = MemoryGraph(self)
        old = None
        if supersedes is not None:
            valid_from = utcnow() if valid_from is None else parse_time(valid_from, "valid_from")
            old = graph.check_supersedable(supersedes, valid_from)
            # A new version is its own record, even if the text was once true before (A→B→A).
            is_unique = False
        if dedup_threshold is None and agent_id is not None:
            dedup_threshold = self._config_value(agent_id, "dedup_threshold")
        if related_ids:
            graph.validate_related([_as_uuid(r, "related_ids") for r in related_ids])
        item = {
            "content": content, "agent_id": agent_id, "user_id": user_id, "room_id": room_id,
            "kind": kind, "tags": list(tags or []), "metadata": dict(metadata or {}),
            "importance": importance, "data": dict(data or {}),
            "embedding": embedding, "is_unique": is_unique,
            "scope": scope, "level": level, "related_ids": list(related_ids or []),
            "valid_from": valid_from, "valid_to": valid_to, "expires_at": expires_at,
            "created_at": created_at,
        }  # fmt: skip
        prepared, vector = self._prepare_vector(item)
        [prepared] = self._retain([prepared])
        if dedup_threshold is not None and not 0.0 <= dedup_threshold <= 1.0:
            raise InvalidInput("dedup_threshold must be between 0 and 1")
        if vector is None:
            vector = self._vectors([prepared])[0]
        if dedup_threshold is not None and vector is not None:
            near = self._near_duplicate(prepared, vector, dedup_threshold)
            if near is not None:
                return near
        self._engine.store.ensure_embedding_space(
            self._engine.dimensions, self._engine.settings.metric
        )
        [(memory, created)] = self._engine.store.insert_memories(
            self._org, [self._to_new(prepared, vector)], actor=self._actor,
            audit=None if self._audit is None else self._audit.created,
        )  # fmt: skip
        if created and memory.related_ids:
            for rid in memory.related_ids:
                graph.link(memory.id, rid, "related")
        if old is not None and created:
            graph.close(old, memory, memory.valid_from or utcnow())
        return memory

    # -- agent configuration, links and facts over time ------------------------------------------

    def _config_value(self, agent_id: str, name: str) -> Any:
        from .people import load_agent_config

        cfg = load_agent_config(self._engine, self._org, agent_id)
        return None if cfg is None else getattr(cfg, name)

    def _retain(self, items: builtins.list[MemoryInput]) -> builtins.list[MemoryInput]:
        """Give memories without an expiry the one their agent's ``retention_days`` implies."""
        days: dict[str, Any] = {}
        out = []
        for item in items:
            if item.agent_id is not None and item.expires_at is None:
                if item.agent_id not in days:
                    days[item.agent_id] = self._config_value(item.agent_id, "retention_days")
                if days[item.agent_id] is not None:
                    start = item.created_at or utcnow()
                    item = item.model_copy(
                        update={"expires_at": start + timedelta(days=days[item.agent_id])}
                    )
            out.append(item)
        return out

    def supersede(self, old_id: uuid.UUID | str, content: str, **fields: Any) -> Memory:
        """Replace a fact with a new version: the old one's ``valid_to`` is closed where the new
        one's ``valid_from`` starts (default now), both stay in history, ``as_of`` finds either.
        The new fact keeps the old one's kind and scope unless ``fields`` say otherwise."""
        return MemoryGraph(self).supersede(old_id, content, **fields)

    def link(
        self,
        source_id: uuid.UUID | str,
        target_id: uuid.UUID | str,
        kind: str = "related",
        metadata: Mapping[str, Any] | None = None,
    ) -> MemoryLink:
        """Link two memories (``kind``: ``related``, ``caused_by``, …); Conflict if linked."""
        return MemoryGraph(self).link(source_id, target_id, kind, dict(metadata or {}))

    def unlink(
        self, source_id: uuid.UUID | str, target_id: uuid.UUID | str, kind: str = "related"
    ) -> None:
        MemoryGraph(self).unlink(source_id, target_id, kind)

    def links(
        self, memory_id: uuid.UUID | str, *, direction: str = "both", kind: str | None = None
    ) -> builtins.list[MemoryLink]:
        """The links around a memory: ``out`` (from it), ``in`` (to it) or ``both``."""
        return MemoryGraph(self).links(memory_id, direction=direction, kind=kind)

    def related(
        self, memory_id: uuid.UUID | str, *, direction: str = "both", kind: str | None = None
    ) -> builtins.list[Memory]:
        """The memories linked to this one, followed in either direction by default."""
        return MemoryGraph(self).related(memory_id, direction=direction, kind=kind)

    def add_many(
        self,
        items: Iterable[MemoryInput | Mapping[str, Any]],
        *,
        embed_batch_size: int | None = None,
    ) -> list[Memory]:
        """Store a batch in one transaction; every item is validated before anything is written.

        Items are dicts with the keyword arguments of :meth:`add` (``content`` required). Vectors
        missing from items are computed in batches. Returns the memories in input order.
        """
        pairs = [self._prepare_vector(item, i) for i, item in enumerate(items)]
        prepared = self._retain([p for p, _ in pairs])
        if len(prepared) > self._limits.max_batch:
            raise LimitExceeded(
                f"a batch holds at most {self._limits.max_batch} items; got {len(prepared)}",
                details={"limit": self._limits.max_batch},
            )
        if not prepared:
            return []
        related = {r for p in prepared for r in p.related_ids}
        graph = MemoryGraph(self)
        graph.validate_related(sorted(related))
        vectors = self._vectors(prepared, embed_batch_size, [v for _, v in pairs])
        rows = [self._to_new(p, v) for p, v in zip(prepared, vectors, strict=True)]
        self._engine.store.ensure_embedding_space(
            self._engine.dimensions, self._engine.settings.metric
        )
        written = self._engine.store.insert_memories(self._org, rows, actor=self._actor)
        for m, created in written:
            if created:
                for rid in m.related_ids:
                    graph.link(m.id, rid, "related")
        return [m for m, _ in written]

    def _vectors(
        self,
        items: Sequence[MemoryInput],
        batch_size: int | None = None,
        given: Sequence[np.ndarray | None] | None = None,
    ) -> list[np.ndarray | None]:
        """``given`` vectors (checked by :meth:`_prepare_vector`) where there are; the rest
        embedded in batches."""
        out: list[np.ndarray | None] = list(given) if given is not None else [None] * len(items)
        todo = [i for i, vector in enumerate(out) if vector is None]
        size = batch_size or self._engine.settings.embedding_batch_size
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            vecs = self._engine.embed_documents([items[i].content for i in chunk])
            for i, vec in zip(chunk, vecs, strict=True):
                out[i] = vec
        return out

    def _near_duplicate(
        self, item: MemoryInput, vector: np.ndarray, threshold: float
    ) -> Memory | None:
        scope = scope_filter(
            agent_id=item.agent_id, user_id=item.user_id, room_id=item.room_id, kind=item.kind
        )
        hits = self._engine.store.search_memories(
            self._org,
            SearchSpec(
                query=MemoryQuery(filter=scope),
                limit=1,
                embedding=vector,
                embedding_model=self._engine.embedder.model,
                metric=self._engine.settings.metric,
            ),
        )
        for hit in hits:
            if hit.distance is not None and (
                distance_to_similarity(hit.distance, self._engine.settings.metric) >= threshold
            ):
                return hit.memory
        return None

    def update(
        self,
        memory_id: uuid.UUID | str,
        *,
        content: str | None = None,
        **changes: Any,
    ) -> Memory:
        """Change a memory; its previous version is kept in :meth:`history`.

        Accepts ``content``, ``kind``, ``data``, ``importance``, ``tags``, ``metadata``, ``scope``,
        ``level``, ``related_ids``, ``valid_from``, ``valid_to``, ``expires_at``, ``embedding``.
        New content is re-embedded unless an ``embedding`` is given.
        """
        mid = _as_uuid(memory_id)
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise InvalidInput(
                f"cannot update {sorted(unknown)}", details={"updatable": sorted(_UPDATABLE)}
            )
        current = self._engine.store.get_memory(self._org, mid)
        merged = current.model_dump(include=set(MemoryInput.model_fields) - {"embedding"})
        merged.update({k: v for k, v in changes.items() if k != "embedding"})
        if content is not None:
            merged["content"] = content
        if changes.get("embedding") is not None:
            merged["embedding"] = changes["embedding"]
        # The given vector checked once, by itself, as add() does (not float by float).
        prepared, vector = self._prepare_vector(merged)
        patch: dict[str, Any] = {}
        for name in _UPDATABLE - {"content", "embedding"}:
            if name in changes:
                value = getattr(prepared, name)
                patch[name] = list(dict.fromkeys(value)) if name == "tags" else value
        if content is not None and content != current.content:
            patch["content"] = prepared.content
            patch["content_hash"] = content_hash(prepared.content)
            if vector is None:
                patch["embedding"] = self._engine.embed_documents([prepared.content])[0]
                patch["embedding_model"] = self._engine.embedder.model
        if vector is not None:
            patch["embedding"] = vector
            patch["embedding_model"] = self._engine.embedder.model
        if not patch:
            return current
        return self._engine.store.update_memory(
            self._org, mid, patch, actor=self._actor,
            audit=None if self._audit is None else self._audit.updated,
        )  # fmt: skip

    def delete(self, memory_id: uuid.UUID | str, *, purge: bool = False) -> None:
        """Soft delete (kept in history, hidden from reads), or ``purge=True``: gone for good,
        history included."""
        mid = _as_uuid(memory_id)
        self._engine.store.delete_memory(
            self._org, mid, purge=purge, actor=self._actor,
            audit=None if self._audit is None else self._audit.deleted(mid, purge),
        )  # fmt: skip

    # -- reads ----------------------------------------------------------------------------------

    def get(
        self,
        memory_id: uuid.UUID | str,
        *,
        include_deleted: bool = False,
        with_embedding: bool = False,
    ) -> Memory:
        memory = self._engine.store.get_memory(
            self._org,
            _as_uuid(memory_id),
            include_deleted=include_deleted,
            with_embedding=with_embedding,
        )
        self._engine.access.record(self._org, [memory.id])
        return memory

    def history(self, memory_id: uuid.UUID | str) -> list[MemoryVersion]:
        """Every version of a memory, oldest first; the last is the current state."""
        return self._engine.store.memory_history(self._org, _as_uuid(memory_id))

    def _query(
        self,
        scopes: Mapping[str, Any],
        filters: Mapping[str, Any] | Filter | None,
        as_of: datetime | str | None,
        include_expired: bool,
        include_deleted: bool,
    ) -> MemoryQuery:
        extra = filters if not isinstance(filters, Mapping) else parse_filter(dict(filters))
        return MemoryQuery(
            filter=combine(scope_filter(**scopes), extra),
            include_deleted=include_deleted,
            include_expired=include_expired,
            as_of=None if as_of is None else parse_time(as_of, "as_of"),
        )

    def list(
        self,
        *,
        agent_id: str | None = None,
        user_id: str | None = None,
        room_id: str | None = None,
        kind: str | Sequence[str] | None = None,
        tags: str | Sequence[str] | None = None,
        filters: Mapping[str, Any] | None = None,
        limit: int = 50,
        cursor: str | None = None,
        as_of: datetime | str | None = None,
        include_expired: bool = False,
        include_deleted: bool = False,
    ) -> Page[Memory]:
        """Newest first, ``limit`` at a time; pass ``page.next_cursor`` back for the next page."""
        if not 1 <= limit <= self._limits.max_page:
            raise InvalidInput(f"limit must be between 1 and {self._limits.max_page}")
        scopes = {"agent_id": agent_id, "user_id": user_id, "room_id": room_id, "kind": kind,
                  "tags": tags}  # fmt: skip
        query = self._query(scopes, filters, as_of, include_expired, include_deleted)
        key = listing_key(
            [self._org, scopes, filters, str(as_of), include_expired, include_deleted]
        )
        after = None if cursor is None else _as_uuid(decode_cursor(cursor, key), "cursor")
        rows = self._engine.store.list_memories(self._org, query, limit=limit + 1, after=after)
        more = len(rows) > limit
        items = rows[:limit]
        return Page(items=items, next_cursor=encode_cursor(items[-1].id, key) if more else None)

    def search(
        self,
        query: str | None = None,
        *,
        embedding: Sequence[float] | None = None,
        mode: str = "hybrid",
        top_k: int | None = None,
        threshold: float | None = None,
        agent_id: str | None = None,
        user_id: str | None = None,
        room_id: str | None = None,
        kind: str | Sequence[str] | None = None,
        tags: str | Sequence[str] | None = None,
        filters: Mapping[str, Any] | None = None,
        as_of: datetime | str | None = None,
        include_expired: bool = False,
        include_deleted: bool = False,
        weights: Weights | Mapping[str, Any] | None = None,
        explain: bool = False,
        exact: bool | None = None,
        ef_search: int | None = None,
    ) -> builtins.list[SearchHit]:
        """Recall by meaning (``vector``), by words (``text``) or both (``hybrid``, default).

        ``score`` is in [0, 1], higher is better: the cosine similarity in vector mode, a squashed
        text relevance in text mode, and the normalised rank fusion (blended with recency and
        importance when weighted) in hybrid mode. ``threshold`` drops hits scoring below it; in
        hybrid mode it is a floor on the vector similarity (hits found only by words are kept).
        ``top_k`` (default 10), ``threshold`` and ``weights`` default to the configuration of
        ``agent_id`` (``db.agents.set_config``) when one agent is searched.
        """
        plan = self._plan_search(
            query, embedding=embedding, mode=mode, top_k=top_k, threshold=threshold,
            agent_id=agent_id, user_id=user_id, room_id=room_id, kind=kind, tags=tags,
            filters=filters, as_of=as_of, include_expired=include_expired,
            include_deleted=include_deleted, weights=weights, explain=explain, exact=exact,
            ef_search=ef_search,
        )  # fmt: skip
        assert plan is not None  # a plan that may block is always made
        return self._hits(plan, self._engine.store.search_memories(self._org, plan.spec))

    async def search_async(
        self, query: str | None = None, **options: Any
    ) -> builtins.list[SearchHit]:
        """:meth:`search` (same arguments, same hits) for code on an event loop, which it never
        blocks. Validation and scoring run on the loop; the statement is awaited there when the
        store has its asynchronous path open on this loop (PostgreSQL, in the server:
        ``Store.open_async``); anything that may block -- an agent's configuration not yet
        read, a text query to embed, a store without that path -- runs in a thread
        (``asyncio.to_thread``: the loop's default executor, with the caller's context, as the
        metered embedder needs).
        """
        plan = self._plan_search(query, may_block=False, **options)
        if plan is None:
            return await asyncio.to_thread(self.search, query, **options)
        store = self._engine.store
        raw = await store.search_memories_async(self._org, plan.spec)
        if raw is None:
            raw = await asyncio.to_thread(store.search_memories, self._org, plan.spec)
        return self._hits(plan, raw)

    def _plan_search(
        self,
        query: str | None = None,
        *,
        embedding: Sequence[float] | None = None,
        mode: str = "hybrid",
        top_k: int | None = None,
        threshold: float | None = None,
        agent_id: str | None = None,
        user_id: str | None = None,
        room_id: str | None = None,
        kind: str | Sequence[str] | None = None,
        tags: str | Sequence[str] | None = None,
        filters: Mapping[str, Any] | None = None,
        as_of: datetime | str | None = None,
        include_expired: bool = False,
        include_deleted: bool = False,
        weights: Weights | Mapping[str, Any] | None = None,
        explain: bool = False,
        exact: bool | None = None,
        ef_search: int | None = None,
        may_block: bool = True,
    ) -> _SearchPlan | None:
        """A search validated and ready for the store; ``None`` when that needs a round trip or
        a model (an agent's configuration not yet read, a query to embed) and ``may_block`` is
        false."""
        if isinstance(agent_id, str) and (top_k is None or threshold is None or weights is None):
            from .people import agent_config_known, load_agent_config

            if not may_block and not agent_config_known(self._engine, self._org, agent_id):
                return None
            cfg = load_agent_config(self._engine, self._org, agent_id)
            if cfg is not None:
                top_k = cfg.top_k if top_k is None else top_k
                threshold = cfg.threshold if threshold is None else threshold
                if weights is None and cfg.weights_overrides():
                    weights = cfg.weights_overrides()
        top_k = 10 if top_k is None else top_k
        lim = self._limits
        if mode not in _MODES:
            raise InvalidInput(f"mode must be one of {list(_MODES)}", details={"mode": mode})
        if not 1 <= top_k <= lim.max_top_k:
            raise InvalidInput(f"top_k must be between 1 and {lim.max_top_k}")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise InvalidInput("threshold must be between 0 and 1")
        if query is not None and len(query) > lim.max_query_chars:
            raise LimitExceeded(f"the query is longer than {lim.max_query_chars} characters")
        if query is not None and not query.strip():
            query = None
        if mode == "text" and query is None:
            raise InvalidInput("text search needs a query")
        if query is None and embedding is None:
            raise InvalidInput("search needs a query or an embedding")
        if ef_search is not None and not 1 <= ef_search <= 1000:
            raise InvalidInput("ef_search must be between 1 and 1000")
        w = _weights(weights)
        scopes = {"agent_id": agent_id, "user_id": user_id, "room_id": room_id, "kind": kind,
                  "tags": tags}  # fmt: skip
        mq = self._query(scopes, filters, as_of, include_expired, include_deleted)

        vector = None
        if mode != "text":
            if embedding is not None:
                vector = self._engine.check_vector(embedding)
            elif query is not None:
                if not may_block:
                    return None
                vector = self._engine.embed_query(query)
        text = query if mode != "vector" else None
        # Fusion needs candidates beyond top_k from each list, or good items ranked k+1 in one
        # list and high in the other would be missed.
        pool = top_k if mode != "hybrid" else min(max(top_k * 4, 40), lim.max_top_k * 4)
        spec = SearchSpec(
            query=mq, limit=pool, embedding=vector, embedding_model=self._engine.embedder.model,
            text=text, metric=self._engine.settings.metric, exact=exact, ef_search=ef_search,
        )  # fmt: skip
        return _SearchPlan(
            spec=spec, mode=mode, top_k=top_k, threshold=threshold, weights=w, explain=explain
        )

    def _hits(self, plan: _SearchPlan, raw: builtins.list[RawHit]) -> builtins.list[SearchHit]:
        """The store's candidates scored, thresholded and cut to ``top_k``; their accesses
        counted."""
        mode, top_k, threshold, explain = plan.mode, plan.top_k, plan.threshold, plan.explain
        metric = self._engine.settings.metric
        w = plan.weights
        if mode != "hybrid" and not explain and not (w.recency or w.importance):
            # One list and nothing blended in: each hit scores its own similarity, as fuse
            # would score it, and the threshold is a floor on that.
            values = [(h.distance if mode == "vector" else h.text_rank) or 0.0 for h in raw]
            found: builtins.list[SearchHit] = []
            for i, score in one_list(values, mode, metric):
                if threshold is not None and score < threshold:
                    break  # best first: every later hit scores less
                found.append(SearchHit(memory=raw[i].memory, score=score, scores={mode: score}))
                if len(found) == top_k:
                    break
            self._engine.access.record(self._org, [h.memory.id for h in found])
            return found
        # Candidates are keyed by their place in ``raw`` (the store returns each memory once):
        # keying them by id hashed each UUID five times a hit, in Python.
        cands = [
            Candidate(i, created_at=h.memory.created_at, importance=h.memory.importance)
            for i, h in enumerate(raw)
        ]
        in_vector = sorted(
            (i for i, h in enumerate(raw) if h.distance is not None),
            key=lambda i: raw[i].distance or 0.0,
        )
        in_text = sorted(
            (i for i, h in enumerate(raw) if h.text_rank is not None),
            key=lambda i: -(raw[i].text_rank or 0.0),
        )
        for rank, i in enumerate(in_vector, start=1):
            c = cands[i]
            c.vector_rank = rank
            c.vector_similarity = distance_to_similarity(raw[i].distance or 0.0, metric)
        for rank, i in enumerate(in_text, start=1):
            c = cands[i]
            c.text_rank = rank
            c.text_score = text_rank_to_score(raw[i].text_rank or 0.0)
        scored = fuse(cands, mode=mode, weights=plan.weights, now=utcnow())
        hits: builtins.list[SearchHit] = []
        for cand, score, parts in scored:
            if threshold is not None:
                # A rank-fused score has no absolute meaning, so in hybrid mode the threshold
                # is a floor on semantic similarity; hits found only by their words stay.
                floor = cand.vector_similarity if mode == "hybrid" else score
                if floor is not None and floor < threshold:
                    continue
            if explain:
                if cand.vector_rank is not None:
                    parts["vector_rank"] = float(cand.vector_rank)
                if cand.text_rank is not None:
                    parts["text_rank"] = float(cand.text_rank)
            assert isinstance(cand.key, int)
            hits.append(SearchHit(memory=raw[cand.key].memory, score=score, scores=parts))
            if len(hits) == top_k:
                break
        self._engine.access.record(self._org, [h.memory.id for h in hits])
        return hits


@dataclass(frozen=True, slots=True)
class _SearchPlan:
    """A validated search: the store's part (``spec``) and what scoring its hits needs."""

    spec: SearchSpec
    mode: str
    top_k: int
    threshold: float | None
    weights: Weights
    explain: bool


def _weights(value: Weights | Mapping[str, Any] | None) -> Weights:
    if value is None:
        return Weights()
    if isinstance(value, Weights):
        return value
    try:
        return Weights(**dict(value))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"invalid weights: {exc}") from None


def _check_json_size(value: Any, name: str, limit: int, where: str) -> None:
    if not value:  # {} or []: nothing to measure (and no dumps per item in bulk imports)
        return
    try:
        size = json_size(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{where}: {name} must be JSON") from None
    if size > limit:
        raise LimitExceeded(
            f"{where}: {name} is {size} bytes as JSON; the limit is {limit}",
            details={"limit": limit},
        )
