"""SQLite DDL of revision 0002 (API keys, usage events, audit log); tenant isolation is in the
queries on SQLite, so nothing here replaces PostgreSQL's row-level security."""

from __future__ import annotations

UP: list[str] = []
DOWN: list[str] = []
