"""The FastAPI application: ``create_app(settings, engram=None)`` and the uvicorn factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ..api import Engram
from ..settings import Settings
from .errors import install_error_handlers
from .hot import HotRoutes
from .middleware import BodyLimitMiddleware, RequestContextMiddleware
from .routes import admin, data_model, keys, memories, organizations, resources, system
from .state import ServerState

__all__ = ["app_from_env", "create_app"]

_DESCRIPTION = """\
Memory for AI agents, per tenant. Authenticate with `Authorization: Bearer <API key or JWT>`.
Errors are `{"error": {"code", "message", "details"}}`; listings are keyset-paginated
(`?limit=&cursor=`, pass back `next_cursor`).
"""


def create_app(settings: Settings, engram: Engram | None = None) -> FastAPI:
    """Build the app. Without ``engram`` it opens the database named by ``settings`` as the
    application role (row-level security in force) and closes it on shutdown; with one, it
    serves that object and leaves closing it to the caller."""
    state = ServerState.open(settings, engram)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()
            state.close()

    from .. import __version__

    app = FastAPI(
        title="engramdb",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.engramdb = state
    install_error_handlers(app)
    app.include_router(system.router)
    app.include_router(memories.router)
    app.include_router(organizations.router)
    app.include_router(keys.router)
    app.include_router(admin.router)
    mounted = resources.mount_named_resources(app, tuple(state.engram.RESOURCES))
    mounted += data_model.mount_data_model(app, state.engram)
    app.state.engramdb_resources = tuple(dict.fromkeys(("memories", *mounted)))
    # Added innermost first: every request gets a context, then the body limit applies, then
    # the hot routes (search, add) are served or the request goes on to FastAPI.
    app.add_middleware(HotRoutes, state=state)
    app.add_middleware(BodyLimitMiddleware, max_bytes=state.settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, state=state)
    return app


def app_from_env() -> FastAPI:
    """Entry point for ``uvicorn --factory`` and each ``--workers`` process: settings from
    ``ENGRAMDB_*``."""
    return create_app(Settings.from_env())
