"""What one server process holds: the engine, the services on top of it, JWT, metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..api import Engram, connect
from ..errors import AuthenticationError, NotFound
from ..service.audit import AuditLog
from ..service.key_cache import KeyCache
from ..service.keys import ApiKeys
from ..service.organizations import Organizations
from ..service.usage import UsageRecorder
from ..settings import Settings
from .context import MeteredEmbedder
from .jwt import JwtVerifier
from .metrics import Metrics

__all__ = ["DEFAULT_APP_ROLE", "ServerState", "server_settings"]

log = logging.getLogger(__name__)

#: The role migration 0002 creates; the server works as it unless told otherwise.
DEFAULT_APP_ROLE = "engramdb_app"


def server_settings(settings: Settings) -> Settings:
    """The server's settings: ``app_role`` defaults to ``engramdb_app``; ``"none"`` opts out
    (only for databases where the connecting user is already a restricted role)."""
    role = settings.app_role
    if role is None:
        return settings.with_(app_role=DEFAULT_APP_ROLE)
    if role.strip().lower() in ("", "none"):
        return settings.with_(app_role=None)
    return settings


def _prepare_as_owner(settings: Settings) -> None:
    """Migrate (where allowed) and create the embedding space's index as the owner: the
    application role may not run DDL."""
    from ..embeddings import build_embedder
    from ..store import open_store

    owner = settings.with_(app_role=None, pool_min_size=1, pool_max_size=1)
    store = open_store(owner)
    try:
        embedder = build_embedder(owner)
        store.ensure_embedding_space(int(embedder.dimensions), owner.metric)
    finally:
        store.close()


@dataclass
class ServerState:
    settings: Settings
    engram: Engram
    owns_engram: bool
    keys: ApiKeys = field(init=False)
    key_cache: KeyCache | None = field(init=False)
    audit: AuditLog = field(init=False)
    usage: UsageRecorder = field(init=False)
    organizations: Organizations = field(init=False)
    jwt: JwtVerifier = field(init=False)
    metrics: Metrics = field(init=False)
    #: Whether start() opened the store's asynchronous search path (and stop() closes it).
    opened_async: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        # First what may refuse the settings (an unreadable JWKS file), before anything that
        # holds a thread or a connection.
        self.jwt = JwtVerifier(self.settings)
        store = self.engram.engine.store
        max_page = self.settings.limits.max_page
        self.audit = AuditLog(store, max_page)
        self.usage = UsageRecorder(store)
        seconds = self.settings.api_key_cache_seconds
        self.key_cache = KeyCache(store, seconds=seconds) if seconds > 0 else None
        self.keys = ApiKeys(
            store, max_page, cache=self.key_cache,
            count_use=None if self.key_cache is None else self.usage.count_key_use,
        )  # fmt: skip
        self.organizations = Organizations(store, max_page)
        self.metrics = Metrics()
        engine = self.engram.engine
        if not isinstance(engine.embedder, MeteredEmbedder):
            engine.embedder = MeteredEmbedder(engine.embedder)

    @classmethod
    def open(cls, settings: Settings, engram: Engram | None = None) -> ServerState:
        if engram is not None:
            return cls(settings, engram, owns_engram=False)
        settings = server_settings(settings)
        if settings.app_role:
            _prepare_as_owner(settings)
        engram = connect(settings=settings)
        try:
            return cls(settings, engram, owns_engram=True)
        except BaseException:
            engram.close()  # the pool and its connections must not outlive a refused start
            raise

    def view(self, organization: str, actor: str | None) -> Engram:
        """The library's object for one organization, acting as ``actor``."""
        return type(self.engram)(self.engram.engine, organization, actor=actor, owns_engine=False)

    def ensure_organization(self, organization: str) -> None:
        """Organizations named by a JWT are created on first use; a deleted one is refused
        (checked on every request, as a deleted organization's keys are)."""
        store = self.engram.engine.store
        try:
            store.get_organization(organization)
            return
        except NotFound:
            store.ensure_organization(organization)  # new, or deleted (then left deleted)
        try:
            store.get_organization(organization)
        except NotFound:
            raise AuthenticationError(
                f"organization {organization!r} was deleted", details={"organization": organization}
            ) from None

    def pool_stats(self) -> dict[str, Any] | None:
        pool = getattr(self.engram.engine.store, "pool", None)
        try:
            return dict(pool.get_stats()) if pool is not None else None
        except Exception:  # a closed pool has no stats; metrics must not fail for it
            return None

    def async_stats(self) -> tuple[dict[str, Any] | None, int | None]:
        """The store's asynchronous search path: its pool's statistics and the searches it
        served (``None, None`` for a store without one)."""
        stats = getattr(self.engram.engine.store, "async_stats", None)
        return (None, None) if stats is None else stats()

    async def start(self) -> None:
        """On the server's event loop, before the first request: the store's asynchronous
        search path (hot searches then await their statement on this loop; server.hot)."""
        self.opened_async = await self.engram.engine.store.open_async()

    async def stop(self) -> None:
        """On the same loop, after the last request."""
        if self.opened_async:
            self.opened_async = False
            await self.engram.engine.store.close_async()

    def close(self) -> None:
        if self.key_cache is not None:
            self.key_cache.close()
        self.usage.close()
        if self.owns_engram:
            self.engram.close()
            if self.settings.database_url is None:
                from ..embedded import EmbeddedPostgres

                # Workers never run exit handlers (see EmbeddedPostgres.leave): leave now.
                EmbeddedPostgres.shared(self.settings.data_dir).leave()
