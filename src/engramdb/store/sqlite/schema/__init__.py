"""SQLite DDL for each Alembic revision; ``migrations/versions/*.py`` call :func:`upgrade`.

One Alembic history serves both backends: each revision runs its PostgreSQL statements itself
and hands SQLite over to this package, whose module ``r<revision>`` holds that revision's
``UP`` and ``DOWN`` statement lists (add a module when you add a revision).

Conventions, so every table reads the same way (they mirror the PostgreSQL schema):

- ``organization_id`` is part of every primary key, unique constraint and foreign key;
- ids that engramdb generates (UUIDv7) are 16-byte BLOBs (they sort by creation);
  caller-chosen ids are TEXT;
- times are INTEGER microseconds since the Unix epoch, UTC (:data:`NOW_US` is the default);
- JSON is TEXT with ``CHECK (json_valid(…))``; arrays of text (tags) are JSON arrays;
- vectors are little-endian float32 BLOBs next to their ``embedding_dim``;
- tables are STRICT; foreign keys are enforced (every connection sets ``foreign_keys = ON``).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["NOW_US", "downgrade", "statements", "upgrade"]

#: The current time in microseconds since the epoch, as a column default.
NOW_US = "(CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER))"


def statements(revision: str, direction: str) -> list[str]:
    """The ``UP`` or ``DOWN`` statements of ``revision``."""
    module = importlib.import_module(f"{__name__}.r{revision}")
    return list(getattr(module, direction))


def _run(op: Any, revision: str, direction: str) -> None:
    bind = op.get_bind()
    for statement in statements(revision, direction):
        # exec_driver_sql: DDL goes to sqlite3 as written (no bind-parameter parsing of ':').
        bind.exec_driver_sql(statement)


def upgrade(op: Any, revision: str) -> None:
    """Apply ``revision``'s SQLite DDL through Alembic's ``op``."""
    _run(op, revision, "UP")


def downgrade(op: Any, revision: str) -> None:
    """Undo ``revision``'s SQLite DDL through Alembic's ``op``."""
    _run(op, revision, "DOWN")
