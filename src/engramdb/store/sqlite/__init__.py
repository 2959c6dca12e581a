"""The SQLite backend: a local file (WAL) or ``:memory:``, with the PostgreSQL store's behaviour."""

from .connection import connect_raw
from .store import SQLiteStore

__all__ = ["SQLiteStore", "connect_raw"]
