"""The Store protocol: what every backend (PostgreSQL, SQLite) does, in typed objects.

Stores persist and retrieve; they do not embed, score or apply business rules (the service
does). Every method takes the organization explicitly: a store never guesses the tenant.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ..filters import Filter
from ..models import Memory, MemoryVersion
from ..models.security import AuditEntry
from .resources import ResourceStore
from .security import SecurityStore

__all__ = [
    "AuditChanged",
    "AuditCreated",
    "Capabilities",
    "ImportStats",
    "MemoryQuery",
    "NewMemory",
    "RawHit",
    "SearchSpec",
    "Store",
]

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can and cannot do; each ``False`` comes with its reason, in one place."""

    row_level_security: bool
    reasons: Mapping[str, str] = field(default_factory=dict)


@dataclass
class NewMemory:
    """A validated memory ready to be written; the service fills every field."""

    id: uuid.UUID
    kind: str
    content: str
    content_hash: str
    agent_id: str | None = None
    user_id: str | None = None
    room_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    importance: float = 0.5
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    scope: str | None = None
    level: str | None = None
    is_unique: bool = True
    related_ids: list[uuid.UUID] = field(default_factory=list)
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    expires_at: datetime | None = None
    embedding_model: str | None = None
    embedding: Vector | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class MemoryQuery:
    """Which memories a listing or search considers.

    By default only live memories: not deleted, not expired, valid now. ``as_of`` asks what was
    valid at that moment instead (facts that were superseded since are found again).
    """

    filter: Filter | None = None
    include_deleted: bool = False
    include_expired: bool = False
    as_of: datetime | None = None


@dataclass(frozen=True)
class SearchSpec:
    """One search: a vector list, a text list, or both; the service fuses them."""

    query: MemoryQuery
    limit: int
    embedding: Vector | None = None
    embedding_model: str | None = None
    text: str | None = None
    metric: str = "cosine"
    exact: bool | None = None  # None: the store chooses by estimated selectivity
    ef_search: int | None = None


@dataclass
class ImportStats:
    """Progress and outcome of :meth:`Store.import_memories`."""

    rows: int = 0  # rows handed to the store so far
    created: int = 0  # written as new memories
    copied: int = 0  # of those, COPYed straight into the table instead of staged (PostgreSQL)
    duplicates: int = 0  # not written: the same content already exists in that scope
    phase: str = "loading"  # "loading", then "indexing" when the index is built at the end, "done"
    index_rebuilt: bool = False  # the store loaded without the vector index and built it after


@dataclass(frozen=True)
class RawHit:
    """A memory a search found: its distance in the vector list, its relevance in the text list."""

    memory: Memory
    distance: float | None = None
    text_rank: float | None = None


#: The audit entry of a memory's creation, given the id of the row about to be inserted (a new
#: memory is version 1); see :meth:`Store.insert_memories`.
AuditCreated = Callable[[uuid.UUID], AuditEntry]

#: The audit entry of a change to a memory, given the memory as the change left it (its new
#: version); see :meth:`Store.update_memory`.
AuditChanged = Callable[[Memory], AuditEntry]


class Store(SecurityStore, ResourceStore, Protocol):
    """Persistence of engramdb's data model; one implementation per backend."""

    dialect: str
    capabilities: Capabilities

    def close(self) -> None: ...

    def ping(self) -> None: ...

    def schema_status(self) -> tuple[str | None, str]:
        """(current revision, head revision) of the database schema."""
        ...

    def ensure_organization(self, org: str) -> None: ...

    def ensure_embedding_space(self, dimensions: int, metric: str) -> None:
        """Make vectors of this many dimensions searchable with an index for ``metric``."""
        ...

    def insert_memories(
        self,
        org: str,
        rows: Sequence[NewMemory],
        *,
        actor: str | None,
        audit: AuditCreated | None = None,
    ) -> list[tuple[Memory, bool]]:
        """Write rows in one transaction; returns (memory, created) in input order.

        A row with ``is_unique`` whose content already exists in the same scope is not written:
        the existing memory comes back with ``created=False``.

        ``audit``, for one row: called with its id, it returns the audit log entry of its
        creation, which is written in the same transaction if and only if the row is created
        (the server's add is then one durable commit, and never a memory without its entry).
        """
        ...

    def import_memories(
        self,
        org: str,
        batches: Iterable[Sequence[NewMemory]],
        *,
        actor: str | None,
        dimensions: int,
        metric: str,
        rebuild_index: bool | None = None,
        on_progress: Callable[[ImportStats], None] | None = None,
    ) -> ImportStats:
        """Write every batch in ONE transaction: all or nothing, and an exception raised while
        the batches are produced (bad input further down a file) rolls the whole import back.

        Dedup as in :meth:`insert_memories`. Each row's ``related_ids`` must name live memories
        of the organization (checked in the transaction; NotFound with ``details["memory"]``, the
        row's id, otherwise). ``rebuild_index``: load without the vector index of
        the (``dimensions``, ``metric``) space and build it once at the end; ``None`` lets the
        store decide (PostgreSQL does when the space holds no vectors yet and it may run DDL).
        """
        ...

    def get_memory(
        self,
        org: str,
        memory_id: uuid.UUID,
        *,
        include_deleted: bool = False,
        with_embedding: bool = False,
    ) -> Memory: ...

    def list_memories(
        self, org: str, query: MemoryQuery, *, limit: int, after: uuid.UUID | None
    ) -> list[Memory]:
        """Newest first (ids are time-ordered), strictly after the cursor id."""
        ...

    def update_memory(
        self,
        org: str,
        memory_id: uuid.UUID,
        changes: Mapping[str, Any],
        *,
        actor: str | None,
        event: str = "update",
        audit: AuditChanged | None = None,
    ) -> Memory:
        """Apply ``changes`` (column → value; ``embedding`` included), bump the version and keep
        the previous state in history, atomically; ``audit``'s entry for the changed memory is
        written in the same transaction."""
        ...

    def delete_memory(
        self,
        org: str,
        memory_id: uuid.UUID,
        *,
        purge: bool,
        actor: str | None,
        audit: AuditEntry | None = None,
    ) -> None:
        """Soft delete (kept in history), or purge: the row and its history are gone. ``audit``
        is written in the same transaction, if the memory was there to delete."""
        ...

    def memory_history(self, org: str, memory_id: uuid.UUID) -> list[MemoryVersion]: ...

    def search_memories(self, org: str, spec: SearchSpec) -> list[RawHit]: ...

    # An event loop's path for searches (the server's hot search). ``search_memories_async``
    # answers ``None`` whenever it cannot serve the search on the running loop without blocking;
    # the caller then runs ``search_memories`` in a thread. Backends without an asynchronous
    # driver (SQLite) always answer ``None`` and open nothing.

    async def open_async(self) -> bool:
        """Prepare the asynchronous path on the running loop (its connections belong to it);
        ``True`` when this call opened it, and its caller is to close it."""
        ...

    async def close_async(self) -> None: ...

    async def search_memories_async(self, org: str, spec: SearchSpec) -> list[RawHit] | None: ...

    def record_access(self, org: str, counts: Mapping[uuid.UUID, int], at: datetime) -> None: ...
