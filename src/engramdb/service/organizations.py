"""Organizations (tenants): list, get, create, rename, soft delete, purge."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import Conflict, InvalidInput
from ..models import Page
from ..models.common import NAME_ID_PATTERN
from ..models.security import Organization
from ..store.base import Store
from .pagination import decode_cursor, encode_cursor, listing_key

__all__ = ["DEFAULT_ORGANIZATION", "Organizations", "check_organization_id"]

_ID = re.compile(NAME_ID_PATTERN)

#: The organization every schema starts with (migration 0001) and connections use by default.
DEFAULT_ORGANIZATION = "default"


def check_organization_id(org: str) -> str:
    if not isinstance(org, str) or not _ID.match(org):
        raise InvalidInput(
            f"organization id {org!r} must be 1-128 letters, digits or _.:@- "
            "(starting with a letter or digit)",
            details={"id": str(org)[:200]},
        )
    return org


class Organizations:
    """Tenants of one engramdb; who may call what is the caller's (the server's) business."""

    def __init__(self, store: Store, max_page: int = 1000) -> None:
        self._store = store
        self._max_page = max_page

    def list(self, *, limit: int = 50, cursor: str | None = None) -> Page[Organization]:
        if not 1 <= limit <= self._max_page:
            raise InvalidInput(f"limit must be between 1 and {self._max_page}")
        key = listing_key(["organizations"])
        after = None if cursor is None else decode_cursor(cursor, key)
        rows = self._store.list_organizations(limit=limit + 1, after=after)
        items = rows[:limit]
        more = len(rows) > limit
        return Page(items=items, next_cursor=encode_cursor(items[-1].id, key) if more else None)

    def get(self, org: str) -> Organization:
        return self._store.get_organization(check_organization_id(org))

    def create(
        self, org: str, *, name: str | None = None, metadata: Mapping[str, Any] | None = None
    ) -> Organization:
        check_organization_id(org)
        from ..errors import NotFound

        try:
            self._store.get_organization(org)
        except NotFound:
            pass
        else:
            raise Conflict(f"organization {org!r} already exists", details={"id": org})
        self._store.ensure_organization(org)
        return self.update(org, name=name or org, metadata=metadata)

    def update(
        self, org: str, *, name: str | None = None, metadata: Mapping[str, Any] | None = None
    ) -> Organization:
        changes: dict[str, Any] = {}
        if name is not None:
            if not name.strip() or len(name) > 200:
                raise InvalidInput("an organization name has 1 to 200 characters")
            changes["name"] = name.strip()
        if metadata is not None:
            changes["metadata"] = dict(metadata)
        return self._store.update_organization(check_organization_id(org), changes)

    def delete(self, org: str, *, purge: bool = False) -> None:
        """Soft delete: its API keys and tokens are refused from then on, its data stays.

        ``purge=True`` forgets the tenant: the organization and every row of it in every table
        (memories, history, vectors, the data model, API keys, usage and audit) go, in one
        transaction; a soft-deleted organization can be purged, an unknown one is NotFound.
        The default organization cannot be purged (Conflict): it is where connections that
        name no organization work.
        """
        check_organization_id(org)
        if purge and org == DEFAULT_ORGANIZATION:
            raise Conflict(
                "the default organization cannot be purged: it is where connections that "
                "name no organization work",
                details={"id": org},
            )
        self._store.delete_organization(org, purge=purge)
