"""The tenancy and security part of the Store protocol: organizations, API keys, usage, audit.

A backend without these (SQLite, for now) inherits :class:`SecurityUnsupported`, which refuses
each of them with one clear error instead of a missing method.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn, Protocol

from ..errors import ConfigurationError
from ..models.security import (
    ApiKey,
    ApiKeyUse,
    AuditEntry,
    Organization,
    UsageEvent,
    UsageTotal,
)

__all__ = ["SecurityStore", "SecurityUnsupported"]


class SecurityStore(Protocol):
    """What the server needs from a store beyond memories."""

    # -- organizations ---------------------------------------------------------------------------

    def list_organizations(self, *, limit: int, after: str | None) -> list[Organization]:
        """Every live organization, by id (operators only: this crosses tenants)."""
        ...

    def get_organization(self, org: str) -> Organization: ...

    def update_organization(self, org: str, changes: Mapping[str, Any]) -> Organization: ...

    def delete_organization(self, org: str) -> None:
        """Soft delete: its keys stop working at once; its data stays until purged."""
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


def _unsupported(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise ConfigurationError(
        "API keys, usage metering and the audit log need the PostgreSQL backend "
        "(the embedded database or postgresql://…)"
    )


class SecurityUnsupported:
    """Mixin for backends without the security tables: every method refuses clearly."""

    list_organizations = _unsupported
    get_organization = _unsupported
    update_organization = _unsupported
    delete_organization = _unsupported
    create_api_key = _unsupported
    list_api_keys = _unsupported
    find_api_keys = _unsupported
    revoke_api_key = _unsupported
    update_api_key = _unsupported
    use_api_key = _unsupported
    prune_api_key_counters = _unsupported
    insert_usage_events = _unsupported
    usage_totals = _unsupported
    insert_audit = _unsupported
    list_audit = _unsupported
