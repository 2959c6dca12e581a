"""Runs engramdb's Alembic migrations on a database given by URL (PostgreSQL or SQLite)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Revision", "current", "downgrade", "head", "history", "upgrade"]

_HERE = Path(__file__).parent
# Any constant works; it only has to be the same in every process migrating the same database.
_ADVISORY_LOCK_KEY = 0x656E6772616D  # "engram"
_local_lock = threading.Lock()


@dataclass(frozen=True)
class Revision:
    revision: str
    down_revision: str | None
    doc: str


def _config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    return cfg


def _script() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision this version of engramdb knows."""
    heads = _script().get_heads()
    if len(heads) != 1:  # pragma: no cover - guarded by tests
        raise RuntimeError(f"migration history has {len(heads)} heads: {heads}")
    return str(heads[0])


def history() -> list[Revision]:
    """All revisions, oldest first."""
    revs = list(_script().walk_revisions())
    revs.reverse()
    return [
        Revision(
            r.revision, r.down_revision, (r.doc or "").strip().splitlines()[0] if r.doc else ""
        )
        for r in revs
    ]


@contextmanager
def _connection(connect: Callable[[], Any], dialect: str) -> Iterator[Any]:
    """An SQLAlchemy connection over a DB-API connection engramdb opened itself.

    Going through ``creator`` keeps one place (the store) that knows how to reach the database.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    url = "postgresql+psycopg://" if dialect == "postgresql" else "sqlite://"
    engine = create_engine(url, creator=connect, poolclass=NullPool)
    if dialect == "sqlite":
        from sqlalchemy import event

        # The store's SQLite connections are in autocommit mode and pysqlite would not begin a
        # transaction for DDL; BEGIN IMMEDIATE makes each run atomic and, like the advisory
        # lock on PostgreSQL, lets one process migrate while the others wait.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def current(connect: Callable[[], Any], dialect: str) -> str | None:
    """The revision the database is at, or ``None`` when it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    with _connection(connect, dialect) as conn:
        rev = MigrationContext.configure(conn).get_current_revision()
        return None if rev is None else str(rev)


def _run(connect: Callable[[], Any], dialect: str, fn: Callable[[Any], None]) -> None:
    from sqlalchemy import text

    with _local_lock, _connection(connect, dialect) as conn:
        cfg = _config()
        cfg.attributes["connection"] = conn
        if dialect == "postgresql":
            # Several processes may start against one database: one migrates, the others wait.
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _ADVISORY_LOCK_KEY})
            conn.commit()
        try:
            fn(cfg)
            conn.commit()
        finally:
            if dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _ADVISORY_LOCK_KEY})
                conn.commit()


def upgrade(connect: Callable[[], Any], dialect: str, target: str = "head") -> None:
    from alembic import command

    _run(connect, dialect, lambda cfg: command.upgrade(cfg, target))


def downgrade(connect: Callable[[], Any], dialect: str, target: str) -> None:
    from alembic import command

    _run(connect, dialect, lambda cfg: command.downgrade(cfg, target))
