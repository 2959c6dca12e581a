"""The audit log: who changed what, when, with the ids before and after."""

from __future__ import annotations

import uuid
from typing import Any

from ..errors import InvalidInput
from ..models import Page, new_id, utcnow
from ..models.security import AuditEntry
from ..store.base import Store
from .pagination import decode_cursor, encode_cursor, listing_key

__all__ = ["AuditLog", "audit_entry"]


def audit_entry(
    org: str,
    *,
    actor_type: str,
    actor_id: str | None,
    action: str,
    resource_type: str,
    resource_id: str | None = None,
    before: Any = None,
    after: Any = None,
    request_id: str | None = None,
) -> AuditEntry:
    """A new entry, not yet written (:meth:`AuditLog.record` writes one; a store writes the
    entry of a change to a memory in the change's transaction: ``Memories(audit=…)``)."""
    return AuditEntry(
        id=new_id(), organization_id=org, actor_type=actor_type, actor_id=actor_id,
        action=action, resource_type=resource_type, resource_id=resource_id, before=before,
        after=after, request_id=request_id, created_at=utcnow(),
    )  # fmt: skip


class AuditLog:
    """Writes one entry per mutation (synchronously: an audit trail that may lag is not one)
    and lists an organization's entries, newest first."""

    def __init__(self, store: Store, max_page: int = 1000) -> None:
        self._store = store
        self._max_page = max_page

    def record(self, org: str, **fields: Any) -> AuditEntry:
        """Write a new entry; ``fields`` as :func:`audit_entry` takes them."""
        entry = audit_entry(org, **fields)
        self.write(entry)
        return entry

    def write(self, entry: AuditEntry) -> None:
        self._store.insert_audit([entry])

    def list(
        self,
        org: str,
        *,
        limit: int = 50,
        cursor: str | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
    ) -> Page[AuditEntry]:
        if not 1 <= limit <= self._max_page:
            raise InvalidInput(f"limit must be between 1 and {self._max_page}")
        key = listing_key(["audit", org, resource_type, resource_id])
        after = None
        if cursor is not None:
            raw = decode_cursor(cursor, key)
            try:
                after = uuid.UUID(raw)
            except ValueError:
                from ..errors import InvalidCursor

                raise InvalidCursor("the cursor is not one this listing produced") from None
        rows = self._store.list_audit(
            org, limit=limit + 1, after=after, resource_type=resource_type,
            resource_id=resource_id,
        )  # fmt: skip
        items = rows[:limit]
        more = len(rows) > limit
        return Page(items=items, next_cursor=encode_cursor(items[-1].id, key) if more else None)
