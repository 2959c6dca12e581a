"""API keys: random secrets shown once and stored as hashes; scopes, tiers, limits, revocation."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import (
    AuthenticationError,
    Conflict,
    InvalidInput,
    NotFound,
    QuotaExceeded,
    RateLimited,
)
from ..models import Page, new_id, utcnow
from ..models.security import SCOPES, TIERS, ApiKey, ApiKeyUse
from ..store.base import Store
from .key_cache import KeyCache
from .pagination import decode_cursor, encode_cursor, listing_key

__all__ = [
    "KEY_PREFIX",
    "ApiKeys",
    "expand_scopes",
    "hash_secret",
    "looks_like_api_key",
    "normalize_scopes",
]

#: Every secret starts with this, so scanners (and people) recognise a leaked engramdb key.
KEY_PREFIX = "edb_"
_PREFIX_CHARS = 8
_NAME_MAX = 200
#: What PATCH /v1/keys/{key} may change; scopes and organization never change (make a new key).
_CHANGEABLE = ("name", "enabled", "rate_limit", "monthly_quota", "expires_at")


def hash_secret(secret: str) -> str:
    """SHA-256 of the secret. Secrets carry 256 random bits, so a fast hash is safe here and
    keeps the per-request lookup cheap; a slow password hash would only add latency."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def looks_like_api_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def _new_secret() -> tuple[str, str]:
    """(secret, visible prefix): ``edb_<8 chars>_<43 chars>``; the prefix names it in lists."""
    ident = base64.b32encode(secrets.token_bytes(5)).decode().lower()[:_PREFIX_CHARS]
    body = secrets.token_urlsafe(32)
    prefix = f"{KEY_PREFIX}{ident}"
    return f"{prefix}_{body}", prefix


def normalize_scopes(scopes: str | Iterable[str]) -> list[str]:
    """``"read,write"`` or a list → the scopes in canonical order; unknown ones are refused."""
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    clean = {s.strip().lower() for s in items if s and s.strip()}
    unknown = clean - set(SCOPES)
    if unknown or not clean:
        raise InvalidInput(
            f"scopes must be a non-empty subset of {list(SCOPES)}",
            details={"unknown": sorted(unknown)},
        )
    return [s for s in SCOPES if s in clean]


def expand_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """What a set of scopes allows: admin implies write, write implies read."""
    have = set(scopes)
    if "admin" in have:
        have |= {"write", "read"}
    if "write" in have:
        have.add("read")
    return frozenset(have)


class ApiKeys:
    """Creation, listing, revocation and per-request checking of API keys, for any organization
    (callers decide who may touch which organization).

    With a ``cache``, keys without limits are remembered once found and their requests are
    handed to ``count_use`` (which writes them in batches) instead of being counted in the
    database each time: see :mod:`engramdb.service.key_cache`.
    """

    def __init__(
        self,
        store: Store,
        max_page: int = 1000,
        *,
        cache: KeyCache | None = None,
        count_use: Callable[[ApiKey], None] | None = None,
    ) -> None:
        if (cache is None) != (count_use is None):
            raise ValueError("a key cache needs count_use, or remembered keys go uncounted")
        self._store = store
        self._max_page = max_page
        self._cache = cache
        self._count_use = count_use

    def _build(
        self,
        org: str,
        *,
        name: str,
        scopes: str | Iterable[str],
        tier: str,
        rate_limit: int | None,
        monthly_quota: int | None,
        expires_at: datetime | None,
        expires_in_days: float | None,
        actor: str | None,
    ) -> tuple[ApiKey, str]:
        name = name.strip()
        if not name or len(name) > _NAME_MAX:
            raise InvalidInput(f"a key needs a name of 1 to {_NAME_MAX} characters")
        if tier not in TIERS:
            raise InvalidInput(f"tier must be one of {list(TIERS)}", details={"tier": tier})
        for what, value in (("rate_limit", rate_limit), ("monthly_quota", monthly_quota)):
            if value is not None and value < 1:
                raise InvalidInput(f"{what} must be at least 1 (leave it out for the tier's)")
        now = utcnow()
        if expires_in_days is not None:
            if expires_in_days <= 0:
                raise InvalidInput("expires_in_days must be positive")
            expires_at = now + timedelta(days=expires_in_days)
        if expires_at is not None:
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=UTC)
            if expires_at <= now:
                raise InvalidInput("expires_at must be in the future")
        default_rate, default_quota = TIERS[tier]
        secret, prefix = _new_secret()
        key = ApiKey(
            id=new_id(),
            organization_id=org,
            prefix=prefix,
            name=name,
            scopes=normalize_scopes(scopes),
            tier=tier,
            rate_limit=rate_limit if rate_limit is not None else default_rate,
            monthly_quota=monthly_quota if monthly_quota is not None else default_quota,
            expires_at=expires_at,
            created_at=now,
            created_by_id=actor,
        )
        return key, secret

    def create(
        self,
        org: str,
        *,
        name: str,
        scopes: str | Iterable[str] = ("read",),
        tier: str = "free",
        rate_limit: int | None = None,
        monthly_quota: int | None = None,
        expires_at: datetime | None = None,
        expires_in_days: float | None = None,
        actor: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret; the secret is never stored and cannot be shown again.
        An organization named for the first time is created."""
        key, secret = self._build(
            org, name=name, scopes=scopes, tier=tier, rate_limit=rate_limit,
            monthly_quota=monthly_quota, expires_at=expires_at,
            expires_in_days=expires_in_days, actor=actor,
        )  # fmt: skip
        self._store.create_api_key(key, hash_secret(secret))
        return key, secret

    def create_first(self, org: str) -> tuple[ApiKey, str] | None:
        """On first start: an unlimited admin key, unless some key already exists anywhere."""
        key, secret = self._build(
            org, name="bootstrap admin", scopes=SCOPES, tier="enterprise", rate_limit=None,
            monthly_quota=None, expires_at=None, expires_in_days=None, actor="engramdb serve",
        )  # fmt: skip
        if not self._store.create_api_key(key, hash_secret(secret), only_if_none=True):
            return None
        return key, secret

    def list(
        self, org: str, *, limit: int = 50, cursor: str | None = None, include_revoked: bool = False
    ) -> Page[ApiKey]:
        if not 1 <= limit <= self._max_page:
            raise InvalidInput(f"limit must be between 1 and {self._max_page}")
        lkey = listing_key(["api_keys", org, include_revoked])
        after = None if cursor is None else _uuid(decode_cursor(cursor, lkey))
        rows = self._store.list_api_keys(
            org, limit=limit + 1, after=after, include_revoked=include_revoked
        )
        items = rows[:limit]
        more = len(rows) > limit
        return Page(items=items, next_cursor=encode_cursor(items[-1].id, lkey) if more else None)

    def find(self, org: str, id_or_prefix: str) -> ApiKey:
        """The one key with this id or prefix; an ambiguous prefix is a Conflict."""
        found = self._store.find_api_keys(org, id_or_prefix.strip())
        if not found:
            raise NotFound(
                f"no API key {id_or_prefix!r} in organization {org!r}",
                details={"key": id_or_prefix},
            )
        if len(found) > 1:
            raise Conflict(
                f"{id_or_prefix!r} matches {len(found)} keys; give more of the prefix or the id",
                details={"matches": [k.prefix for k in found]},
            )
        return found[0]

    def revoke(self, org: str, id_or_prefix: str, *, actor: str | None = None) -> ApiKey:
        """Disable a key for good; the next request made with it is refused."""
        key = self.find(org, id_or_prefix)
        return self._store.revoke_api_key(org, key.id, actor=actor)

    def update(
        self,
        org: str,
        id_or_prefix: str,
        changes: Mapping[str, Any],
        *,
        actor: str | None = None,
    ) -> ApiKey:
        """Rename, disable or re-enable a key, or change its limits (``None``: unlimited) or
        expiry (``None``: never); the key's next request sees the change. Revoked keys stay
        revoked (Conflict)."""
        unknown = set(changes) - set(_CHANGEABLE)
        if unknown:
            raise InvalidInput(
                f"only {list(_CHANGEABLE)} of a key can change",
                details={"unknown": sorted(unknown)},
            )
        clean: dict[str, Any] = {}
        if "name" in changes:
            name = changes["name"]
            if not isinstance(name, str) or not name.strip() or len(name.strip()) > _NAME_MAX:
                raise InvalidInput(f"a key needs a name of 1 to {_NAME_MAX} characters")
            clean["name"] = name.strip()
        if "enabled" in changes:
            if not isinstance(changes["enabled"], bool):
                raise InvalidInput("enabled must be true or false")
            clean["enabled"] = changes["enabled"]
        for what in ("rate_limit", "monthly_quota"):
            if what in changes:
                value = changes[what]
                if value is not None and (not isinstance(value, int) or value < 1):
                    raise InvalidInput(f"{what} must be at least 1, or null for unlimited")
                clean[what] = value
        if "expires_at" in changes:
            expires_at = changes["expires_at"]
            if expires_at is not None:
                if not isinstance(expires_at, datetime):
                    raise InvalidInput("expires_at must be a date and time, or null for never")
                if expires_at.tzinfo is None:
                    expires_at = expires_at.replace(tzinfo=UTC)
                if expires_at <= utcnow():
                    raise InvalidInput("expires_at must be in the future")
            clean["expires_at"] = expires_at
        key = self.find(org, id_or_prefix)
        return self._store.update_api_key(org, key.id, clean, actor=actor)

    def lookup_cached(self, secret: str) -> ApiKeyUse | None:
        """The key from memory (no I/O), its request counted in the background; ``None`` when
        it is not remembered, and then :meth:`lookup_stored` finds it."""
        if self._cache is None or self._count_use is None:
            return None
        key = self._cache.get(hash_secret(secret))
        if key is None:
            return None
        self._count_use(key)
        return ApiKeyUse(key=key, minute_count=0, month_count=0)

    def lookup_stored(self, secret: str) -> ApiKeyUse:
        """The key found in the store, with this request counted in its windows (one round
        trip), and remembered if it may be; unknown secrets raise AuthenticationError."""
        key_hash = hash_secret(secret)
        # Taken before the lookup: a change heard meanwhile keeps what it finds out of memory.
        generation = None if self._cache is None else self._cache.generation()
        use = self._store.use_api_key(key_hash)
        if use is None:
            raise AuthenticationError("invalid API key")
        if self._cache is not None and generation is not None:
            self._cache.put(key_hash, use.key, generation)
        return use

    def lookup(self, secret: str) -> ApiKeyUse:
        """The key a secret belongs to, with this request counted: from memory where
        remembered, else from the store. Call :meth:`check` on the result."""
        cached = self.lookup_cached(secret)
        return cached if cached is not None else self.lookup_stored(secret)

    def check(self, use: ApiKeyUse, now: datetime | None = None) -> ApiKey:
        """Refuse revoked or expired keys (AuthenticationError) and requests over the rate limit
        (RateLimited, with ``retry_after``) or the monthly quota (QuotaExceeded)."""
        key = use.key
        now = now or utcnow()
        if key.revoked_at is not None:
            raise AuthenticationError("this API key was revoked", details={"key": key.prefix})
        if not key.enabled:
            raise AuthenticationError("this API key is disabled", details={"key": key.prefix})
        if key.expires_at is not None and key.expires_at <= now:
            raise AuthenticationError("this API key has expired", details={"key": key.prefix})
        if key.rate_limit is not None and use.minute_count > key.rate_limit:
            raise RateLimited(
                f"rate limit of {key.rate_limit} requests per minute exceeded",
                retry_after=max(1, 60 - now.second),
                details={"limit": key.rate_limit, "window": "minute"},
            )
        if key.monthly_quota is not None and use.month_count > key.monthly_quota:
            raise QuotaExceeded(
                f"monthly quota of {key.monthly_quota} requests is used up",
                retry_after=_seconds_to_next_month(now),
                details={"limit": key.monthly_quota, "window": "month"},
            )
        return key

    def authenticate(self, secret: str) -> ApiKey:
        """:meth:`lookup` then :meth:`check`."""
        return self.check(self.lookup(secret))


def _seconds_to_next_month(now: datetime) -> int:
    now = now.astimezone(UTC)
    nxt = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
    return max(1, int((nxt - now).total_seconds()))


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        from ..errors import InvalidCursor

        raise InvalidCursor("the cursor is not one this listing produced") from None
