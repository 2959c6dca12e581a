"""Authentication (API key or JWT bearer) and scope checks, as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from ..errors import AuthenticationError, PermissionDenied
from ..models.security import ApiKeyUse
from ..service.keys import expand_scopes, looks_like_api_key
from .context import Principal, RequestContext
from .state import ServerState

__all__ = ["authenticate", "check_scope", "key_principal", "require", "state_of"]

_bearer = HTTPBearer(
    auto_error=False,
    description="An engramdb API key (`edb_…`) or a JWT (HS256 or RS256, Supabase-style claims).",
)


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.engramdb
    return state


def context_of(request: Request) -> RequestContext:
    ctx = request.scope.get("engramdb.ctx")
    if ctx is None:  # the middleware always sets it; this guards direct ASGI use
        ctx = request.scope["engramdb.ctx"] = RequestContext(request_id="-")
    assert isinstance(ctx, RequestContext)
    return ctx


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def authenticate(request: Request, credentials: Credentials) -> Principal:
    """The caller, from ``Authorization: Bearer …``; refuses with 401, or 429 over the limits.

    A coroutine: a key the server remembers (no limits, see ``service.key_cache``) is checked
    on the event loop without I/O. Other keys are found, and counted in their rate-limit and
    quota windows, in one round trip in a worker thread; so are JWTs (verifying one may fetch
    signing keys, and its organization may be created).
    """
    if credentials is None or not credentials.credentials:
        raise AuthenticationError(
            "missing credentials: send Authorization: Bearer <API key or JWT>"
        )
    token = credentials.credentials.strip()
    state = state_of(request)
    ctx = context_of(request)
    if not looks_like_api_key(token):
        return await run_in_threadpool(_jwt_principal, state, ctx, token)
    use = state.keys.lookup_cached(token)
    if use is None:
        use = await run_in_threadpool(state.keys.lookup_stored, token)
    return key_principal(state, ctx, use)


def key_principal(state: ServerState, ctx: RequestContext, use: ApiKeyUse) -> Principal:
    """The caller behind a found key, set on the request's context; refuses revoked, expired
    or disabled keys (401) and requests over the key's limits (429)."""
    key = use.key
    scopes = expand_scopes(key.scopes)
    ctx.principal = Principal(
        organization=key.organization_id,
        scopes=scopes,
        kind="api_key",
        subject=str(key.id),
        key_id=key.id,
        key_prefix=key.prefix,
        operator=key.organization_id == state.settings.organization and "admin" in scopes,
    )
    # Set before the checks: a refused request of a known key is still metered (401, 429).
    state.keys.check(use)
    return ctx.principal


def _jwt_principal(state: ServerState, ctx: RequestContext, token: str) -> Principal:
    principal = state.jwt.verify(token)
    principal = Principal(
        organization=principal.organization,
        scopes=expand_scopes(principal.scopes),
        kind="jwt",
        subject=principal.subject,
        operator=principal.operator,
    )
    ctx.principal = principal
    state.ensure_organization(principal.organization)
    return principal


def require(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets the request through only with ``scope`` (admin ⊃ write ⊃ read)."""

    # async: a pure check, run on the event loop (a sync dependency costs a worker-thread hop).
    async def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        check_scope(principal, scope)
        return principal

    check.__name__ = f"require_{scope}"
    return check


def check_scope(principal: Principal, scope: str) -> None:
    """Refuse (403) a caller without ``scope``; ``operator`` needs an admin of the server's
    home organization."""
    if scope == "operator":
        if not principal.operator:
            raise PermissionDenied(
                "only an admin of the server's home organization can do this",
                details={"required": "operator"},
            )
    elif scope not in principal.scopes:
        raise PermissionDenied(
            f"this credential lacks the {scope!r} scope",
            details={"required": scope, "granted": sorted(principal.scopes)},
        )
