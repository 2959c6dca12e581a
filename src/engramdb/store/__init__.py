"""Stores: the Store protocol and the backend chosen once, from the database URL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ConfigurationError
from ..settings import Settings
from .base import Capabilities, MemoryQuery, NewMemory, RawHit, SearchSpec, Store

__all__ = [
    "Capabilities",
    "MemoryQuery",
    "NewMemory",
    "RawHit",
    "SearchSpec",
    "Store",
    "backend_for",
    "open_store",
    "raw_connector",
]


def backend_for(url: str | None) -> str:
    """``postgresql`` (embedded when ``url`` is None), or ``sqlite``; nothing else decides this."""
    if url is None or url.startswith(("postgresql://", "postgres://")):
        return "postgresql"
    if url.startswith("sqlite:"):
        return "sqlite"
    raise ConfigurationError(
        f"unsupported database URL {url.split('@')[-1]!r}: use postgresql://…, sqlite:///path.db "
        "or sqlite://:memory: (or nothing, for the embedded PostgreSQL)"
    )


def open_store(settings: Settings) -> Store:
    """Open (and, where allowed, migrate) the store the settings name."""
    url = settings.database_url
    backend = backend_for(url)
    if backend == "sqlite":
        from .sqlite import SQLiteStore

        assert url is not None
        migrate = True if settings.auto_migrate is None else settings.auto_migrate
        return SQLiteStore(url, settings).open(migrate=migrate)

    from .postgres import PostgresStore

    if url is None:
        from ..embedded import EmbeddedPostgres

        url = EmbeddedPostgres.shared(settings.data_dir).start()
        migrate = True if settings.auto_migrate is None else settings.auto_migrate
    else:
        migrate = bool(settings.auto_migrate)
    return PostgresStore(url, settings).open(migrate=migrate)


def raw_connector(settings: Settings) -> tuple[Callable[[], Any], str]:
    """(a factory of plain DB-API connections, the dialect) for the configured database, without
    opening a store: what the migration runner takes (``engramdb db``)."""
    url = settings.database_url
    if backend_for(url) == "sqlite":
        from .sqlite import connect_raw as sqlite_connect

        assert url is not None
        return (lambda: sqlite_connect(url)), "sqlite"
    import psycopg

    if url is None:
        from ..embedded import EmbeddedPostgres

        url = EmbeddedPostgres.shared(settings.data_dir).start()
    pg_url = url
    return (lambda: psycopg.connect(pg_url)), "postgresql"
