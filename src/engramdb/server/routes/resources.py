"""Routes for the library's named resources (users, agents, rooms, …), all on one pattern:

``POST /v1/<name>`` (create or update by id) · ``GET /v1/<name>`` (keyset pages; other query
parameters are the resource's list filters) · ``GET|PATCH|DELETE /v1/<name>/{id}``.

A resource is mounted when the library's ``Engram`` has it, so resources added there plug in by
adding one line to :data:`NAMED_RESOURCES`.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Request, Response, status
from pydantic import BaseModel

from ...errors import InvalidInput
from ..auth import require
from ..context import Principal
from ..schemas import PageOf
from .common import ERRORS, JsonRoute, audit, view

__all__ = ["NAMED_RESOURCES", "mount_named_resources"]

JsonObject = Annotated[dict[str, Any], Body()]
Reader = Annotated[Principal, Depends(require("read"))]
Writer = Annotated[Principal, Depends(require("write"))]

#: (attribute on Engram and URL segment, singular for the audit log, response model path)
NAMED_RESOURCES: tuple[tuple[str, str, str], ...] = (
    ("users", "user", "engramdb.models.agents:User"),
    ("agents", "agent", "engramdb.models.agents:Agent"),
    ("rooms", "room", "engramdb.models.agents:Room"),
)
_RESERVED_QUERY = {"limit", "cursor", "include_deleted"}


def _model(path: str) -> type[BaseModel] | None:
    module, _, name = path.partition(":")
    try:
        found = getattr(__import__(module, fromlist=[name]), name)
    except (ImportError, AttributeError):
        return None
    return found if isinstance(found, type) and issubclass(found, BaseModel) else None


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a service verb, turning unknown keyword arguments into a 422 (not a 500)."""
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise InvalidInput(f"invalid parameters: {exc}") from None
    return fn(*args, **kwargs)


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _router(attr: str, singular: str, model: type[BaseModel] | None) -> APIRouter:
    router = APIRouter(route_class=JsonRoute, prefix=f"/v1/{attr}", tags=[attr], responses=ERRORS)
    one: Any = model or dict[str, Any]
    page: Any = PageOf[model] if model is not None else PageOf[dict[str, Any]]  # type: ignore[valid-type]

    def service(request: Request, principal: Principal) -> Any:
        return getattr(view(request, principal), attr)

    @router.post(
        "", status_code=status.HTTP_201_CREATED, response_model=one,
        summary=f"Create {_a(singular)} (or update it: ids are the caller's own)",
        name=f"create_{singular}",
    )  # fmt: skip
    def create(request: Request, principal: Writer, body: JsonObject) -> Any:
        fields = dict(body)
        ident = fields.pop("id", None)
        if not isinstance(ident, str):
            raise InvalidInput(f"a {singular} needs an 'id' (a string)")
        made = _call(service(request, principal).add, ident, **fields)
        audit(request, principal, "create", singular, ident, after={"id": ident})
        return made

    @router.get("", response_model=page, summary=f"List {attr} (keyset pages)", name=f"list_{attr}")
    def list_(
        request: Request,
        principal: Reader,
        limit: int = 50,
        cursor: str | None = None,
        include_deleted: bool = False,
    ) -> Any:
        filters = {k: v for k, v in request.query_params.items() if k not in _RESERVED_QUERY}
        result = _call(
            service(request, principal).list, limit=limit, cursor=cursor,
            include_deleted=include_deleted, **filters,
        )  # fmt: skip
        return {"items": result.items, "next_cursor": result.next_cursor}

    @router.get("/{item_id}", response_model=one, summary=f"One {singular}", name=f"get_{singular}")
    def get(
        request: Request, item_id: str, principal: Reader, include_deleted: bool = False
    ) -> Any:
        return service(request, principal).get(item_id, include_deleted=include_deleted)

    @router.patch(
        "/{item_id}",
        response_model=one,
        summary=f"Change {_a(singular)}",
        name=f"update_{singular}",
    )
    def update(request: Request, item_id: str, principal: Writer, body: JsonObject) -> Any:
        updated = _call(service(request, principal).update, item_id, **body)
        audit(request, principal, "update", singular, item_id, before={"id": item_id},
              after={"id": item_id})  # fmt: skip
        return updated

    @router.delete(
        "/{item_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, response_model=None,
        summary=f"Soft delete {_a(singular)}; ?purge=true deletes it and what belongs to it",
        name=f"delete_{singular}",
    )  # fmt: skip
    def delete(request: Request, item_id: str, principal: Writer, purge: bool = False) -> Any:
        service(request, principal).delete(item_id, purge=purge)
        audit(request, principal, "purge" if purge else "delete", singular, item_id,
              before={"id": item_id})  # fmt: skip
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router


def mount_named_resources(app: FastAPI, resources: tuple[str, ...]) -> list[str]:
    """Mount the routes of every named resource the library has; returns their names."""
    mounted = []
    for attr, singular, model_path in NAMED_RESOURCES:
        if attr in resources:
            app.include_router(_router(attr, singular, _model(model_path)))
            mounted.append(attr)
    return mounted
