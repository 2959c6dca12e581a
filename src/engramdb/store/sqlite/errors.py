"""Translates sqlite3 errors into engramdb's exception tree at the store boundary."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from ...errors import BackendError, Conflict, EngramError, InvalidInput, NotFound, Unavailable

__all__ = ["is_busy", "translate_errors"]

_CONSTRAINT = re.compile(r"constraint failed: (?:index )?'?([^']+)'?")
_UNAVAILABLE = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY",
                "SQLITE_NOMEM", "SQLITE_CORRUPT", "SQLITE_NOTADB")  # fmt: skip


def _name(exc: sqlite3.Error) -> str:
    return str(getattr(exc, "sqlite_errorname", "") or "")


def is_busy(exc: sqlite3.Error) -> bool:
    """Another connection holds the lock (SQLITE_BUSY / SQLITE_LOCKED and their variants)."""
    name = _name(exc)
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in str(exc)


def _constraint(exc: sqlite3.Error) -> str | None:
    match = _CONSTRAINT.search(str(exc))
    return match.group(1) if match else None


@contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except EngramError:
        raise
    except sqlite3.IntegrityError as exc:
        name = _name(exc)
        details = {"constraint": _constraint(exc)}
        if name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
            raise Conflict(
                "an object with the same unique key already exists", details=details
            ) from exc
        if name == "SQLITE_CONSTRAINT_FOREIGNKEY":
            raise NotFound("a referenced object does not exist", details=details) from exc
        raise InvalidInput(f"value rejected by the database: {exc}", details=details) from exc
    except (sqlite3.DataError, OverflowError) as exc:
        raise InvalidInput(f"value rejected by the database: {exc}") from exc
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            raise Unavailable(
                "the SQLite database stayed locked by another writer for longer than the "
                "busy timeout",
                details={"error": str(exc)},
            ) from exc
        if _name(exc).startswith(_UNAVAILABLE):
            raise Unavailable(f"the database is unavailable: {exc}") from exc
        raise BackendError(f"database error: {exc}") from exc
    except sqlite3.Error as exc:
        raise BackendError(f"database error: {exc}") from exc
