"""What the parts of the PostgreSQL store (its mixins) use of the store itself, for the type
checker: the settings, and the two ways a statement runs with its tenant set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.rows import RowFactory, dict_row

if TYPE_CHECKING:
    from ...settings import Settings

__all__ = ["StoreCore"]


class StoreCore:
    """Base of the store's mixins; :class:`~.store.PostgresStore` implements all of it."""

    if TYPE_CHECKING:
        settings: Settings

        def _tx(
            self, org: str | None
        ) -> AbstractContextManager[psycopg.Cursor[dict[str, Any]]]: ...

        def _round_trip(
            self,
            org: str | None,
            query: sql.SQL | sql.Composed,
            params: Sequence[Any],
            local: Mapping[str, str] | None = None,
            *,
            prepare: bool | None = None,
            row_factory: RowFactory[Any] = dict_row,
        ) -> list[Any]: ...
