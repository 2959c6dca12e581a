"""ASGI middleware: body size limit, and the per-request context (request id, metering, metrics,
and a last-resort 500 without a stack trace)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import BackendError, EngramError, LimitExceeded
from .context import RequestContext, reset_current, set_current
from .state import ServerState

__all__ = ["BodyLimitMiddleware", "RequestContextMiddleware", "header", "replaying"]

log = logging.getLogger(__name__)


async def _send_error(send: Send, exc: EngramError, request_id: str | None = None) -> None:
    body = json.dumps({"error": exc.to_dict()}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": exc.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes`` with 413: at once when Content-Length says so, else as
    soon as the streamed body crosses the limit (the route never sees a partial body)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        too_big = LimitExceeded(
            f"the request body is larger than {limit} bytes", details={"limit": limit}
        )
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await _send_error(send, too_big)
                    return
        # Read the body here, up to the limit, and replay it to the app: raising from inside the
        # app's receive would reach the JSON parser as a malformed body (400), not a 413.
        if scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        buffered: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > limit:
                await _send_error(send, too_big)
                return
            if not message.get("more_body", False):
                break

        await self.app(scope, replaying(buffered, receive), send)


class RequestContextMiddleware:
    """Gives each request an id and a context; after it, records latency and status in the
    metrics and, for authenticated callers, a usage event (queued, written in batches)."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = header(scope, b"x-request-id") or uuid.uuid4().hex
        ctx = RequestContext(request_id=request_id[:64])
        scope["engramdb.ctx"] = ctx
        token = set_current(ctx)
        start = time.perf_counter()
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", ctx.request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                status = 500
                await _send_error(
                    send, BackendError("internal error", details={"request_id": ctx.request_id}),
                    ctx.request_id,
                )  # fmt: skip
        finally:
            reset_current(token)
            self._observe(scope, ctx, status, time.perf_counter() - start)

    def _observe(self, scope: Scope, ctx: RequestContext, status: int, seconds: float) -> None:
        route = _route(scope)
        method = str(scope.get("method", ""))
        metrics = self.state.metrics
        metrics.requests.labels(route, method, str(status)).inc()
        metrics.latency.labels(route, method).observe(seconds)
        p = ctx.principal
        if p is not None:
            self.state.usage.record(
                organization_id=p.organization, endpoint=route, method=method,
                status_code=status, latency_ms=seconds * 1000.0, api_key_id=p.key_id,
                subject=p.subject, tokens=ctx.tokens,
            )  # fmt: skip


def _route(scope: Scope) -> str:
    """The route's template (``/v1/memories/{memory_id}``), so metrics do not explode per id."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


def replaying(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that hands out ``messages`` (a body already read) before reading on."""

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            try:
                return str(value.decode("latin-1"))
            except UnicodeDecodeError:
                return None
    return None
