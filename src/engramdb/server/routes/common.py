"""Helpers every route module uses: the caller's view of the library, audit entries, errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from ...api import Engram
from ...errors import InvalidFilter
from ...models.common import loads_json
from ...models.security import AuditEntry
from ...service.audit import audit_entry
from ..auth import context_of, state_of
from ..context import Principal, RequestContext
from ..schemas import ErrorBody

__all__ = [
    "ERRORS",
    "JsonRoute",
    "audit",
    "json_response",
    "parse_filters",
    "request_entry",
    "view",
]

#: Documented on every route: the error shape and when each status happens.
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "Malformed request (not JSON, bad cursor)"),
        (401, "Missing, invalid, expired or revoked credentials"),
        (403, "The credentials lack the scope"),
        (404, "Not found in the caller's organization"),
        (409, "Conflicts with existing state"),
        (413, "Body or value over a size limit"),
        (422, "Invalid input"),
        (429, "Rate limit or monthly quota exceeded (see Retry-After)"),
        (503, "Database or embedder unavailable"),
    )
}


class _JsonRequest(Request):
    """Parses a JSON body with :func:`loads_json` (pydantic-core) instead of :func:`json.loads`;
    ``NaN`` is read (the library then refuses such a vector, as in-process), and a malformed
    body raises ``json.loads``'s error, which FastAPI reports as it always does (400)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_json(await self.body())
        return self._json


class JsonRoute(APIRoute):
    """The route class of every router: request bodies parsed by :class:`_JsonRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(_JsonRequest(request.scope, request.receive))

        return handle


def json_response(body: BaseModel, status_code: int = 200) -> Response:
    """``body`` as JSON, serialized once by pydantic, for the hot routes (add, search).

    Returning a model instead makes FastAPI dump it, validate the dump against the route's
    ``response_model`` (in a worker thread, for a sync route) and encode it again: three passes
    over ten memories instead of one. The route keeps declaring its ``response_model``, which
    documents the same shape in the OpenAPI schema.
    """
    return Response(body.model_dump_json(), status_code=status_code, media_type="application/json")


def view(request: Request, principal: Principal) -> Engram:
    """The library object of the caller's organization, acting as the caller."""
    return state_of(request).view(principal.organization, principal.actor)


def audit(
    request: Request,
    principal: Principal,
    action: str,
    resource_type: str,
    resource_id: str | None = None,
    **changes: Any,
) -> None:
    """Write the entry of what ``principal`` did in this request (``changes``: ``before``,
    ``after``, ``organization`` as :func:`request_entry` takes them)."""
    entry = request_entry(
        context_of(request), principal, action, resource_type, resource_id, **changes
    )
    state_of(request).audit.write(entry)


def request_entry(
    ctx: RequestContext,
    principal: Principal,
    action: str,
    resource_type: str,
    resource_id: str | None = None,
    *,
    before: Any = None,
    after: Any = None,
    organization: str | None = None,
) -> AuditEntry:
    """The audit entry of what ``principal`` did in this request, not yet written; in the
    caller's organization unless ``organization`` names another."""
    return audit_entry(
        organization or principal.organization, actor_type=principal.kind,
        actor_id=principal.actor, action=action, resource_type=resource_type,
        resource_id=resource_id, before=before, after=after, request_id=ctx.request_id,
    )  # fmt: skip


def parse_filters(raw: str | None) -> dict[str, Any] | None:
    """``?filters=`` carries the filter expression as JSON."""
    if raw is None or raw == "":
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidFilter("filters must be a JSON object") from None
    if not isinstance(value, dict):
        raise InvalidFilter("filters must be a JSON object")
    return value
