"""``/v1/memories``: create (one or a batch), list, get, patch, delete, history, search."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from ...models import Memory
from ...models.security import AuditEntry
from ...service.memories import Memories
from ..auth import context_of, require, state_of
from ..context import Principal, RequestContext
from ..schemas import (
    MemoryBatch,
    MemoryBody,
    MemoryCreate,
    MemoryItems,
    MemoryPage,
    MemoryPatch,
    SearchBody,
    SearchResults,
    VersionList,
)
from ..state import ServerState
from .common import ERRORS, JsonRoute, json_response, parse_filters, request_entry, view

router = APIRouter(
    route_class=JsonRoute, prefix="/v1/memories", tags=["memories"], responses=ERRORS
)

Reader = Annotated[Principal, Depends(require("read"))]
Writer = Annotated[Principal, Depends(require("write"))]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Memory | MemoryItems,
    summary="Store one memory, or a batch ({'items': [...]}) in one transaction",
)
def create_memories(request: Request, body: MemoryBody, principal: Writer) -> Any:
    return create(state_of(request), context_of(request), principal, body)


def create(
    state: ServerState, ctx: RequestContext, principal: Principal, body: MemoryCreate | MemoryBatch
) -> Response:
    """``POST /v1/memories``, for the route above and for ``server.hot``."""
    if isinstance(body, MemoryBatch):
        made = state.view(principal.organization, principal.actor).memories.add_many(body.items)
        state.metrics.memories_written.inc(len(made))
        ids = [str(m.id) for m in made]
        state.audit.write(request_entry(ctx, principal, "create", "memory", after={"ids": ids}))
        return json_response(MemoryItems(items=made), status.HTTP_201_CREATED)
    fields = body.model_dump(exclude_unset=True)
    content = fields.pop("content")
    entries = _RequestAudit(ctx, principal)
    memory = _memories(state, principal, entries).add(content, **fields)
    state.metrics.memories_written.inc()
    if str(memory.id) not in entries.written:  # a duplicate came back: audited on its own
        state.audit.write(entries.created(memory.id, memory.version))
    return json_response(memory, status.HTTP_201_CREATED)


class _RequestAudit:
    """The audit entries of one request's change to a memory (``service.memories.MemoryAudit``),
    which the store writes in the change's own transaction: one durable commit, not two, and
    never a change without its entry. ``written`` lists the memories given one."""

    def __init__(self, ctx: RequestContext, principal: Principal) -> None:
        self.ctx = ctx
        self.principal = principal
        self.written: list[str] = []

    def _entry(self, action: str, memory_id: str, **changes: Any) -> AuditEntry:
        self.written.append(memory_id)
        return request_entry(self.ctx, self.principal, action, "memory", memory_id, **changes)

    def created(self, memory_id: uuid.UUID, version: int = 1) -> AuditEntry:
        mid = str(memory_id)
        return self._entry("create", mid, after={"id": mid, "version": version})

    def updated(self, memory: Memory) -> AuditEntry:
        mid = str(memory.id)
        return self._entry("update", mid, before={"id": mid},
                           after={"id": mid, "version": memory.version})  # fmt: skip

    def deleted(self, memory_id: uuid.UUID, purge: bool) -> AuditEntry:
        mid = str(memory_id)
        return self._entry("purge" if purge else "delete", mid, before={"id": mid})


def _memories(state: ServerState, principal: Principal, audit: _RequestAudit) -> Memories:
    return Memories(state.engram.engine, principal.organization, principal.actor, audit=audit)


@router.get("", response_model=MemoryPage, summary="List memories, newest first (keyset pages)")
def list_memories(
    request: Request,
    principal: Reader,
    agent_id: str | None = None,
    user_id: str | None = None,
    room_id: str | None = None,
    kind: Annotated[list[str] | None, Query()] = None,
    tags: Annotated[list[str] | None, Query()] = None,
    filters: Annotated[str | None, Query(description="A filter expression, as JSON")] = None,
    limit: int = 50,
    cursor: str | None = None,
    as_of: str | None = None,
    include_expired: bool = False,
    include_deleted: bool = False,
) -> Any:
    page = view(request, principal).memories.list(
        agent_id=agent_id, user_id=user_id, room_id=room_id,
        kind=kind[0] if kind and len(kind) == 1 else kind,
        tags=tags, filters=parse_filters(filters), limit=limit, cursor=cursor, as_of=as_of,
        include_expired=include_expired, include_deleted=include_deleted,
    )  # fmt: skip
    return MemoryPage(items=page.items, next_cursor=page.next_cursor)


@router.post("/search", response_model=SearchResults, summary="Recall by meaning, words or both")
async def search_memories(request: Request, body: SearchBody, principal: Reader) -> Any:
    return await search(state_of(request), principal, body)


async def search(state: ServerState, principal: Principal, body: SearchBody) -> Response:
    """``POST /v1/memories/search``, for the route above and for ``server.hot``; on the event
    loop: the library's search_async never blocks it, and awaits the statement there when the
    store can (its asynchronous connections, opened by the server's start)."""
    fields = body.model_dump(exclude_unset=True)
    start = time.perf_counter()
    memories = state.view(principal.organization, principal.actor).memories
    hits = await memories.search_async(**fields)
    state.metrics.search_latency.labels(str(fields.get("mode", "hybrid"))).observe(
        time.perf_counter() - start
    )
    return json_response(SearchResults(results=hits))


@router.get("/{memory_id}", response_model=Memory, summary="One memory")
def get_memory(
    request: Request,
    memory_id: str,
    principal: Reader,
    include_deleted: bool = False,
    with_embedding: bool = False,
) -> Any:
    return view(request, principal).memories.get(
        memory_id, include_deleted=include_deleted, with_embedding=with_embedding
    )


@router.patch("/{memory_id}", response_model=Memory, summary="Change a memory (new version)")
def update_memory(request: Request, memory_id: str, body: MemoryPatch, principal: Writer) -> Any:
    changes = body.model_dump(exclude_unset=True)
    entries = _RequestAudit(context_of(request), principal)
    updated = _memories(state_of(request), principal, entries).update(memory_id, **changes)
    if not entries.written:  # nothing changed, so the store wrote nothing: audited here
        state_of(request).audit.write(entries.updated(updated))
    return updated


@router.delete(
    "/{memory_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    response_model=None,
    summary="Soft delete (kept in history); ?purge=true deletes for good",
)
def delete_memory(request: Request, memory_id: str, principal: Writer, purge: bool = False) -> Any:
    entries = _RequestAudit(context_of(request), principal)
    _memories(state_of(request), principal, entries).delete(memory_id, purge=purge)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{memory_id}/history", response_model=VersionList, summary="Every version")
def memory_history(request: Request, memory_id: str, principal: Reader) -> Any:
    return VersionList(items=view(request, principal).memories.history(memory_id))
