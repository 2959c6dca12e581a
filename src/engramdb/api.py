"""The in-process database object (``Engram``), its async face, and ``connect()``."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Generator
from types import TracebackType
from typing import Any

from .embeddings.base import Embedder
from .service.blocks import Blocks, Tools
from .service.decisions import Decisions
from .service.engine import Engine
from .service.goals import Goals, Relationships
from .service.memories import Memories
from .service.messages import Messages
from .service.people import Agents, Users
from .service.rooms import Logs, Rooms
from .service.work import Sessions, Workflows
from .settings import Settings
from .store import open_store

__all__ = ["AsyncEngram", "Engram", "connect", "connect_async"]


class Engram:
    """A connection to engramdb for one organization: ``db.memories`` and the other resources.

    Views for other organizations (:meth:`for_organization`) share the engine (pool, embedder)
    and are cheap; only the view that created the engine closes it.
    """

    #: Resource attributes; the async face wraps each of them.
    RESOURCES: tuple[str, ...] = (
        "memories", "users", "agents", "rooms", "messages", "blocks", "tools", "goals",
        "relationships", "decisions", "sessions", "workflows", "logs",
    )  # fmt: skip

    def __init__(
        self,
        engine: Engine,
        organization: str = "default",
        *,
        actor: str | None = None,
        owns_engine: bool = True,
    ) -> None:
        self._engine = engine
        self._owns_engine = owns_engine
        self.organization = organization
        self.actor = actor
        self.memories = Memories(engine, organization, actor)
        self.users = Users(engine, organization, actor)
        self.agents = Agents(engine, organization, actor)
        self.rooms = Rooms(engine, organization, actor)
        self.messages = Messages(engine, organization, actor)
        self.blocks = Blocks(engine, organization, actor)
        self.tools = Tools(engine, organization, actor)
        self.goals = Goals(engine, organization, actor)
        self.relationships = Relationships(engine, organization, actor)
        self.decisions = Decisions(engine, organization, actor)
        self.sessions = Sessions(engine, organization, actor)
        self.workflows = Workflows(engine, organization, actor)
        self.logs = Logs(engine, organization, actor)

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def settings(self) -> Settings:
        return self._engine.settings

    @property
    def embedder(self) -> Embedder:
        return self._engine.embedder

    def for_organization(self, organization: str, *, actor: str | None = None) -> Engram:
        """A view of the same database scoped to another organization (created on first use)."""
        self._engine.store.ensure_organization(organization)
        return type(self)(self._engine, organization, actor=actor, owns_engine=False)

    def flush(self) -> None:
        """Write pending background work now (access counts); reads never wait for it."""
        self._engine.access.flush()

    def close(self) -> None:
        if self._owns_engine:
            self._engine.close()

    def __enter__(self) -> Engram:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _AsyncProxy:
    """Every method of the wrapped resource, as a coroutine run in a worker thread.

    This is the one bridge between the sync implementation and the async face: behaviour lives
    once, in the sync services; psycopg's pool and SQLite release the GIL while they wait.
    """

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr
        # A method with an asynchronous form of its own (``search`` and ``search_async``) is
        # awaited on the loop instead: that form moves to a thread only what may block.
        own = getattr(self._target, f"{name}_async", None)
        if inspect.iscoroutinefunction(own):
            return own
        if inspect.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(attr, *args, **kwargs)

        return call

    def __dir__(self) -> list[str]:
        return [n for n in dir(self._target) if not n.startswith("_")]


class AsyncEngram:
    """The async face of :class:`Engram`: the same resources and methods, awaited."""

    def __init__(self, sync: Any) -> None:
        self._sync = sync
        self.organization: str = sync.organization
        #: Whether this object opened the store's asynchronous path (connect_async does).
        self._opened_async = False
        for name in sync.RESOURCES:
            setattr(self, name, _AsyncProxy(getattr(sync, name)))

    @property
    def sync(self) -> Any:
        """The synchronous object underneath."""
        return self._sync

    async def for_organization(self, organization: str, **kwargs: Any) -> AsyncEngram:
        view = await asyncio.to_thread(self._sync.for_organization, organization, **kwargs)
        return AsyncEngram(view)

    async def flush(self) -> None:
        await asyncio.to_thread(self._sync.flush)

    async def close(self) -> None:
        if self._opened_async:
            self._opened_async = False
            await self._sync.engine.store.close_async()
        await asyncio.to_thread(self._sync.close)

    async def _open_async(self) -> None:
        """The store's asynchronous search path on this loop (PostgreSQL; nothing elsewhere,
        nor for a remote server, whose client has no store here)."""
        engine = getattr(self._sync, "engine", None)
        if engine is not None:
            self._opened_async = await engine.store.open_async()

    async def __aenter__(self) -> AsyncEngram:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        # Resources added by later versions of the sync object are reachable too.
        return _AsyncProxy(getattr(self._sync, name))


def connect(
    url: str | None = None,
    *,
    api_key: str | None = None,
    organization: str | None = None,
    embedder: Embedder | str | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> Engram:
    """Open engramdb.

    ``url``: nothing for the embedded PostgreSQL, ``postgresql://…``, ``sqlite:///path.db``,
    ``sqlite://:memory:``, or ``http(s)://host:port`` for a remote engramdb server (with
    ``api_key``). Without ``settings``, ``ENGRAMDB_*`` environment variables are read here;
    ``options`` override single settings (``embedder="hash"``, ``data_dir=…``, …).
    ``embedder`` is an :class:`Embedder` object, or the name of one as in the setting.
    """
    if url is not None and url.startswith(("http://", "https://")):
        from .client import connect_remote

        # The remote client has the same resources, methods and exceptions as Engram.
        remote: Any = connect_remote(url, api_key=api_key, organization=organization, **options)
        return remote  # type: ignore[no-any-return]
    base = settings if settings is not None else Settings.from_env()
    changes: dict[str, Any] = dict(options)
    if isinstance(embedder, str):
        # The setting's name shares the keyword with the object: a name is the setting.
        changes["embedder"] = embedder
        embedder = None
    if url is not None:
        changes["database_url"] = url
    if organization is not None:
        changes["organization"] = organization
    cfg = base.with_(**changes) if changes else base
    if embedder is None:
        from .embeddings import build_embedder

        embedder = build_embedder(cfg)
    store = open_store(cfg)
    try:
        if cfg.organization != "default":
            store.ensure_organization(cfg.organization)
        engine = Engine(store, embedder, cfg)
    except BaseException:
        store.close()
        raise
    return Engram(engine, cfg.organization)


class _Connecting:
    """What :func:`connect_async` returns: await it, or use it with ``async with``."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._args = args
        self._kwargs = kwargs
        self._db: AsyncEngram | None = None

    async def _open(self) -> AsyncEngram:
        sync = await asyncio.to_thread(connect, *self._args, **self._kwargs)
        db = AsyncEngram(sync)
        try:
            await db._open_async()
        except BaseException:
            await asyncio.to_thread(sync.close)
            raise
        self._db = db
        return db

    def __await__(self) -> Generator[Any, None, AsyncEngram]:
        return self._open().__await__()

    async def __aenter__(self) -> AsyncEngram:
        return await self._open()

    async def __aexit__(self, *exc: object) -> None:
        if self._db is not None:
            await self._db.close()


def connect_async(url: str | None = None, **kwargs: Any) -> _Connecting:
    """Async :func:`connect`: ``db = await engramdb.connect_async()`` or
    ``async with engramdb.connect_async() as db``; every method is a coroutine."""
    return _Connecting((url,), kwargs)
