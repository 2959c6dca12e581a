"""Security and tenancy models: organizations, API keys, usage events and totals, audit entries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from .common import Model

__all__ = [
    "SCOPES",
    "TIERS",
    "ApiKey",
    "ApiKeyUse",
    "ApiKeyUses",
    "AuditEntry",
    "Organization",
    "Scope",
    "UsageEvent",
    "UsageTotal",
]

Scope = Literal["read", "write", "admin"]
#: Permissions a key can hold; ``admin`` implies ``write``, which implies ``read``.
SCOPES: tuple[str, ...] = ("read", "write", "admin")

#: The seeds' tiers and their default limits: (requests per minute, requests per month).
#: ``None`` is unlimited. A key's own ``rate_limit`` / ``monthly_quota`` override its tier's.
TIERS: dict[str, tuple[int | None, int | None]] = {
    "free": (60, 1_000),
    "developer": (300, 50_000),
    "pro": (1_200, 1_000_000),
    "enterprise": (None, None),
}


class Organization(Model):
    """A tenant: every other object belongs to exactly one."""

    id: str
    name: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None


class ApiKey(Model):
    """An API key as stored: never its secret, only the prefix that identifies it to people."""

    id: uuid.UUID
    organization_id: str
    prefix: str
    name: str
    scopes: list[str]
    tier: str = "free"
    rate_limit: int | None = None
    monthly_quota: int | None = None
    enabled: bool = True
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    created_at: datetime
    created_by_id: str | None = None


class ApiKeyUse(Model):
    """A key found by its secret's hash, with this request counted in its windows.

    A key without limits that the server remembers (``engramdb.service.key_cache``) is counted
    in the background instead: its counts here are 0, which no check reads for such a key.
    """

    key: ApiKey
    minute_count: int
    month_count: int


class ApiKeyUses(Model):
    """Requests of one key in one minute, counted in memory, to add to its windows."""

    key_id: uuid.UUID
    minute: datetime  # the start of the minute (UTC)
    count: int
    last_used_at: datetime


class UsageEvent(Model):
    """One authenticated request, as metered."""

    id: uuid.UUID
    organization_id: str
    api_key_id: uuid.UUID | None = None
    subject: str | None = None
    endpoint: str
    method: str
    status_code: int
    latency_ms: float
    tokens: int = 0
    created_at: datetime


class UsageTotal(Model):
    """Requests, errors, tokens and latency of one key (or JWT subject) in one month."""

    month: str
    api_key_id: uuid.UUID | None = None
    subject: str | None = None
    requests: int
    errors: int
    tokens: int
    avg_latency_ms: float


class AuditEntry(Model):
    """One mutation: who (actor), what (action on a resource), when, and the ids before/after."""

    id: uuid.UUID
    organization_id: str
    actor_type: str
    actor_id: str | None = None
    action: str
    resource_type: str
    resource_id: str | None = None
    before: Any = None
    after: Any = None
    request_id: str | None = None
    created_at: datetime
