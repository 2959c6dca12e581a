"""The tenancy and security part of the Store protocol: organizations, API keys, usage, audit.

Every backend implements it (``store/postgres/security.py``, ``store/sqlite/security.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from ..models.security import (
    ApiKey,
    ApiKeyUse,
    ApiKeyUses,
    AuditEntry,
    Organization,
    UsageEvent,
    UsageTotal,
)

__all__ = ["AUDIT_FIELDS", "KEY_FIELDS", "ORG_COLUMNS", "USAGE_FIELDS", "KeyWatch",
           "SecurityStore"]  # fmt: skip

# The columns of the security tables, in the order both backends read and write them.
KEY_FIELDS = (
    "id", "organization_id", "prefix", "name", "scopes", "tier", "rate_limit", "monthly_quota",
    "enabled", "expires_at", "last_used_at", "revoked_at", "created_at", "created_by_id",
)  # fmt: skip
ORG_COLUMNS = "id, name, metadata, created_at, updated_at, deleted_at"
AUDIT_FIELDS = (
    "organization_id", "id", "actor_type", "actor_id", "action", "resource_type", "resource_id",
    "before", "after", "request_id", "created_at",
)  # fmt: skip
USAGE_FIELDS = (
    "organization_id", "id", "api_key_id", "subject", "endpoint", "method", "status_code",
    "latency_ms", "tokens", "created_at",
)  # fmt: skip


class KeyWatch(Protocol):
    """A subscription to API key changes (see :meth:`SecurityStore.watch_api_keys`)."""

    @property
    def alive(self) -> bool:
        """Whether changes are being heard now; while not, nothing may be remembered."""
        ...

    def close(self) -> None: ...


class SecurityStore(Protocol):
    """What the server needs from a store beyond memories."""

    # -- organizations ---------------------------------------------------------------------------

    def list_organizations(self, *, limit: int, after: str | None) -> list[Organization]:
        """Every live organization, by id (operators only: this crosses tenants)."""
        ...

    def get_organization(self, org: str) -> Organization: ...

    def update_organization(self, org: str, changes: Mapping[str, Any]) -> Organization: ...

    def delete_organization(self, org: str, *, purge: bool = False) -> None:
        """Soft delete: its keys stop working at once; its data stays until purged.

        ``purge``: the organization row and every row of it in every table (memories, history,
        vectors, the data model, keys and their counters, usage, audit) go in one transaction,
        by the ``organization_id`` foreign keys' ON DELETE CASCADE; a soft-deleted organization
        can be purged too. The store also drops what it caches of the organization. Whether an
        organization may be purged is the service's rule, not the store's.
        """
        ...

    # -- API keys ----------------------------------------------------------------------------------

    def create_api_key(self, key: ApiKey, key_hash: str, *, only_if_none: bool = False) -> bool:
        """Store a key (its secret's hash only). With ``only_if_none``, only when no key exists
        in any organization (first start); returns whether it was stored."""
        ...

    def list_api_keys(
        self, org: str, *, limit: int, after: uuid.UUID | None, include_revoked: bool
    ) -> list[ApiKey]:
        """Newest first, strictly after the cursor id."""
        ...

    def find_api_keys(self, org: str, id_or_prefix: str) -> list[ApiKey]:
        """Keys whose id is, or whose prefix starts with, ``id_or_prefix``."""
        ...

    def revoke_api_key(self, org: str, key_id: uuid.UUID, *, actor: str | None) -> ApiKey: ...

    def update_api_key(
        self, org: str, key_id: uuid.UUID, changes: Mapping[str, Any], *, actor: str | None
    ) -> ApiKey:
        """Change a live key's name, enabled flag, limits or expiry; a revoked key is a
        Conflict (revocation is final)."""
        ...

    def use_api_key(self, key_hash: str) -> ApiKeyUse | None:
        """Find a key by hash across organizations and, when it is usable, count this request
        in its minute and month windows (atomically, so every server process shares them)."""
        ...

    def prune_api_key_counters(self, org: str, before: datetime) -> int:
        """Forget an organization's per-minute windows that ended before ``before``."""
        ...

    def add_api_key_uses(self, org: str, uses: Sequence[ApiKeyUses]) -> None:
        """Add requests counted in memory to their keys' minute and month windows and move
        ``last_used_at`` forward; keys deleted since are skipped."""
        ...

    def watch_api_keys(self, on_change: Callable[[str | None], None]) -> KeyWatch | None:
        """Call ``on_change`` whenever a key or its organization changes, by whoever changes
        it: with the key's id, ``org:<id>`` for an organization, or ``None`` when anything may
        have changed (changes went unheard). Changes made through this store are reported
        before the call that made them returns; others as the database announces them.
        ``None`` when the backend cannot hear other processes' changes: then keys must be
        looked up on every request."""
        ...

    # -- usage and audit ---------------------------------------------------------------------------

    def insert_usage_events(self, events: Sequence[UsageEvent]) -> None: ...

    def usage_totals(
        self,
        org: str,
        *,
        since: datetime | None,
        api_key_id: uuid.UUID | None,
        subject: str | None = None,
    ) -> list[UsageTotal]:
        """Totals per month and key (or JWT subject), newest month first; ``api_key_id`` and
        ``subject`` narrow it to one caller."""
        ...

    def insert_audit(self, entries: Sequence[AuditEntry]) -> None: ...

    def list_audit(
        self,
        org: str,
        *,
        limit: int,
        after: uuid.UUID | None,
        resource_type: str | None = None,
        resource_id: str | None = None,
    ) -> list[AuditEntry]:
        """Newest first, strictly after the cursor id."""
        ...
