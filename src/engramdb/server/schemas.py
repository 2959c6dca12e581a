"""Request and response bodies of the HTTP API (the domain models are reused where they fit)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from ..models import Memory, MemoryInput, MemoryVersion, SearchHit
from ..models.security import ApiKey, AuditEntry, Organization, UsageTotal

__all__ = [
    "ApiKeyCreate",
    "ApiKeyCreated",
    "ApiKeyPatch",
    "AuditPage",
    "ErrorBody",
    "Info",
    "KeyPage",
    "MemoryBatch",
    "MemoryBody",
    "MemoryCreate",
    "MemoryItems",
    "MemoryPage",
    "MemoryPatch",
    "OrganizationCreate",
    "OrganizationPage",
    "OrganizationPatch",
    "PageOf",
    "SearchBody",
    "SearchResults",
    "UsageReport",
    "VersionList",
]

T = TypeVar("T")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable: branch on this.")
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorDetail


class PageOf(BaseModel, Generic[T]):
    """One page of a keyset listing; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[T]
    next_cursor: str | None = None


MemoryPage = PageOf[Memory]
KeyPage = PageOf[ApiKey]
AuditPage = PageOf[AuditEntry]
OrganizationPage = PageOf[Organization]


class MemoryCreate(MemoryInput):
    """One memory to store (``dedup_threshold``: also treat near-identical vectors as duplicates;
    ``supersedes``: the id of the fact this one replaces)."""

    dedup_threshold: float | None = None
    supersedes: uuid.UUID | None = None


class MemoryBatch(_Body):
    """Several memories, stored in one transaction: all or nothing."""

    items: list[MemoryInput]


def _create_kind(value: Any) -> str:
    return "many" if isinstance(value, dict) and "items" in value else "one"


MemoryBody = Annotated[
    Annotated[MemoryCreate, Tag("one")] | Annotated[MemoryBatch, Tag("many")],
    Discriminator(_create_kind),
]


class MemoryItems(BaseModel):
    items: list[Memory]


class VersionList(BaseModel):
    """Every version of a memory, oldest first; the last is the current state."""

    items: list[MemoryVersion]


class MemoryPatch(_Body):
    """Fields to change; the previous version is kept in the history."""

    content: str | None = None
    kind: str | None = None
    data: dict[str, Any] | None = None
    importance: float | str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    scope: str | None = None
    level: str | None = None
    related_ids: list[uuid.UUID] | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    expires_at: datetime | None = None
    embedding: list[float] | None = None


class SearchBody(_Body):
    """A search by ``query`` (text), ``embedding`` (a vector), or both."""

    query: str | None = None
    embedding: list[float] | None = None
    mode: str = Field("hybrid", description="hybrid, vector or text")
    top_k: int = 10
    threshold: float | None = None
    agent_id: str | None = None
    user_id: str | None = None
    room_id: str | None = None
    kind: str | list[str] | None = None
    tags: str | list[str] | None = None
    filters: dict[str, Any] | None = None
    as_of: datetime | str | None = None
    include_expired: bool = False
    include_deleted: bool = False
    weights: dict[str, Any] | None = None
    explain: bool = False
    exact: bool | None = None
    ef_search: int | None = None


class SearchResults(BaseModel):
    results: list[SearchHit]


class ApiKeyCreate(_Body):
    name: str
    scopes: list[str] = Field(default_factory=lambda: ["read"])
    tier: str = "free"
    rate_limit: int | None = Field(None, description="Requests per minute; the tier's if unset.")
    monthly_quota: int | None = Field(None, description="Requests per month; the tier's if unset.")
    expires_at: datetime | None = None
    expires_in_days: float | None = None
    organization_id: str | None = Field(
        None, description="Another organization (operators only); created if new."
    )


class ApiKeyPatch(_Body):
    """Only the fields sent change; ``null`` limits are unlimited, a ``null`` expiry is never."""

    name: str | None = None
    enabled: bool | None = Field(None, description="false: refused from the next request.")
    rate_limit: int | None = Field(None, description="Requests per minute; null: unlimited.")
    monthly_quota: int | None = Field(None, description="Requests per month; null: unlimited.")
    expires_at: datetime | None = None


class ApiKeyCreated(BaseModel):
    """The new key. ``key`` is the secret: it is shown this once and cannot be recovered."""

    key: str
    id: uuid.UUID
    api_key: ApiKey


class OrganizationCreate(_Body):
    id: str
    name: str | None = None
    metadata: dict[str, Any] | None = None


class OrganizationPatch(_Body):
    name: str | None = None
    metadata: dict[str, Any] | None = None


class UsageReport(BaseModel):
    organization_id: str
    totals: list[UsageTotal]


class EmbedderInfo(BaseModel):
    model: str
    dimensions: int


class Info(BaseModel):
    """What this server is and who the caller is."""

    version: str
    organization: str
    scopes: list[str]
    principal: str
    embedder: EmbedderInfo
    metric: str
    resources: list[str]
    limits: dict[str, int]
