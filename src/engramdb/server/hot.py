"""A shorter path through the server for the two hot routes: searching and adding memories.

FastAPI's routing, dependency solving and body handling cost about 0.4 ms per request on the
benchmark machine (2 cores), a fifth of what a small search costs over HTTP. This middleware
serves ``POST /v1/memories/search`` and ``POST /v1/memories`` itself when the request is the
common case: a JSON body that validates, and an API key the server remembers (see
``service.key_cache``). It runs the same code as the FastAPI routes (``routes.memories.search``
and ``create``, the same scope check, the same error rendering), so the response is the same.
A search is awaited on the event loop (``routes.memories.search``: the library's
``search_async``, whose statement goes through the store's asynchronous connections when the
server opened them at start); an add runs in a worker thread.

Everything else goes on to FastAPI untouched, with the body replayed: other routes, JWTs, keys
looked up in the database, bodies that are not JSON or do not validate (FastAPI reports those
in its own shape). The decision is made before the key is used, so no request is counted twice.
The routes stay declared in FastAPI, which documents them in the OpenAPI schema.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import EngramError
from ..models.common import loads_json
from ..service.keys import looks_like_api_key
from .auth import check_scope, key_principal
from .context import Principal, RequestContext
from .errors import render_error
from .middleware import header, replaying
from .routes import memories
from .schemas import MemoryBody, SearchBody
from .state import ServerState

__all__ = ["HotRoutes"]

#: A route's code, run in a worker thread (synchronous) or awaited on the loop.
Handler = Callable[[ServerState, RequestContext, Principal, Any], Response]
AsyncHandler = Callable[[ServerState, RequestContext, Principal, Any], Awaitable[Response]]


@dataclass(frozen=True)
class _Hot:
    """One hot route: its body's type, the scope it needs and the code that serves it."""

    route: APIRoute
    body: TypeAdapter[Any]
    scope: str
    run: Handler | AsyncHandler


async def _search(
    state: ServerState, _ctx: RequestContext, principal: Principal, body: Any
) -> Response:
    # On the loop: the search itself moves whatever may block into a thread (search_async).
    return await memories.search(state, principal, body)


def _create(state: ServerState, ctx: RequestContext, principal: Principal, body: Any) -> Response:
    return memories.create(state, ctx, principal, body)


#: (method, path, body, scope, handler) of each route served here.
_TABLE: tuple[tuple[str, str, Any, str, Handler | AsyncHandler], ...] = (
    ("POST", "/v1/memories/search", SearchBody, "read", _search),
    ("POST", "/v1/memories", MemoryBody, "write", _create),
)


def _route(method: str, path: str) -> APIRoute:
    for route in memories.router.routes:
        if isinstance(route, APIRoute) and route.path == path and method in (route.methods or ()):
            return route
    raise LookupError(f"no route {method} {path}")  # the routes module changed: fix the table


class HotRoutes:
    """ASGI middleware, inside the request context and the body limit (``app.py``)."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state
        #: Requests served here rather than by FastAPI (read by the tests).
        self.served = 0
        self.routes = {
            (method, path): _Hot(_route(method, path), TypeAdapter(body), scope, run)
            for method, path, body, scope, run in _TABLE
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = None
        if scope["type"] == "http":
            path = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            hot = self.routes.get((scope["method"], path))
        ctx = scope.get("engramdb.ctx")
        if hot is None or not isinstance(ctx, RequestContext):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        chunks: list[bytes] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = _parse(scope, hot, b"".join(chunks))
        token = _api_key(scope) if body is not None else None
        use = self.state.keys.lookup_cached(token) if token is not None else None
        if use is None:
            # Not the common case: FastAPI serves it, reading the same body.
            await self.app(scope, replaying(messages, receive), send)
            return
        self.served += 1
        scope["route"] = hot.route  # the route's template names it in the metrics
        try:
            principal = key_principal(self.state, ctx, use)
            check_scope(principal, hot.scope)
            if inspect.iscoroutinefunction(hot.run):
                response = await hot.run(self.state, ctx, principal, body)
            else:
                # asyncio.to_thread (the loop's default executor, the request's context carried
                # in for the metered embedder) rather than Starlette's run_in_threadpool:
                # anyio's limiter and cancel scopes cost about 0.05 ms a request here.
                response = await asyncio.to_thread(hot.run, self.state, ctx, principal, body)
        except EngramError as exc:
            response = render_error(exc)
        await response(scope, receive, send)


def _parse(scope: Scope, hot: _Hot, raw: bytes) -> Any:
    """The validated body, or ``None`` when FastAPI should judge it (and report the error)."""
    media_type = (header(scope, b"content-type") or "").partition(";")[0]
    if media_type.strip().lower() != "application/json":
        return None
    try:
        # As the FastAPI routes read bodies (routes.common._JsonRequest), NaN included.
        return hot.body.validate_python(loads_json(raw))
    except (ValueError, ValidationError):
        return None


def _api_key(scope: Scope) -> str | None:
    """The API key of ``Authorization: Bearer edb_…``; ``None`` for anything else (JWTs too)."""
    scheme, _, credentials = (header(scope, b"authorization") or "").partition(" ")
    token = credentials.strip()
    if scheme.lower() != "bearer" or not token or not looks_like_api_key(token):
        return None
    return token
