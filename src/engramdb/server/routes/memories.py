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
from .common import ERRORS, JsonRoute, audit, json_response, parse_filters, request_entry, view

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
    created: list[uuid.UUID] = []

    def entry(memory_id: uuid.UUID) -> AuditEntry:
        created.append(memory_id)
        return request_entry(ctx, principal, "create", "memory", str(memory_id),
                             after={"id": str(memory_id), "version": 1})  # fmt: skip

    # The entry is written in the memory's transaction: one durable commit, not two.
    memories = Memories(state.engram.engine, principal.organization, principal.actor,
                        audit_created=entry)  # fmt: skip
    memory = memories.add(content, **fields)
    state.metrics.memories_written.inc()
    if memory.id not in created:  # an existing memory came back (a duplicate): audited here
        mid, after = str(memory.id), {"id": str(memory.id), "version": memory.version}
        state.audit.write(request_entry(ctx, principal, "create", "memory", mid, after=after))
    return json_response(memory, status.HTTP_201_CREATED)


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
def search_memories(request: Request, body: SearchBody, principal: Reader) -> Any:
    return search(state_of(request), principal, body)


def search(state: ServerState, principal: Principal, body: SearchBody) -> Response:
    """``POST /v1/memories/search``, for the route above and for ``server.hot``."""
    fields = body.model_dump(exclude_unset=True)
    start = time.perf_counter()
    hits = state.view(principal.organization, principal.actor).memories.search(**fields)
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
    updated = view(request, principal).memories.update(memory_id, **changes)
    audit(request, principal, "update", "memory", str(updated.id),
          before={"id": str(updated.id)},
          after={"id": str(updated.id), "version": updated.version})  # fmt: skip
    return updated


@router.delete(
    "/{memory_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    response_model=None,
    summary="Soft delete (kept in history); ?purge=true deletes for good",
)
def delete_memory(request: Request, memory_id: str, principal: Writer, purge: bool = False) -> Any:
    view(request, principal).memories.delete(memory_id, purge=purge)
    audit(request, principal, "purge" if purge else "delete", "memory", memory_id,
          before={"id": memory_id})  # fmt: skip
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{memory_id}/history", response_model=VersionList, summary="Every version")
def memory_history(request: Request, memory_id: str, principal: Reader) -> Any:
    return VersionList(items=view(request, principal).memories.history(memory_id))
