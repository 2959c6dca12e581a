"""PostgreSQL side of tenancy and security: organizations, API keys, usage events, audit log."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ...errors import Conflict, InvalidInput, NotFound
from ...models.security import (
    ApiKey,
    ApiKeyUse,
    ApiKeyUses,
    AuditEntry,
    Organization,
    UsageEvent,
    UsageTotal,
)
from ..security import AUDIT_FIELDS as _AUDIT_FIELDS
from ..security import KEY_FIELDS as _KEY_FIELDS
from ..security import ORG_COLUMNS as _ORG_COLS
from ..security import USAGE_FIELDS as _USAGE_FIELDS
from ..security import KeyWatch
from .core import StoreCore
from .notify import KeyChangeListener, Subscription

__all__ = ["SecurityMixin"]

_KEY_COLS = sql.SQL(", ").join(map(sql.Identifier, _KEY_FIELDS))
_KEY_CHANGEABLE = ("name", "enabled", "rate_limit", "monthly_quota", "expires_at")
# Serialises first-start key creation across processes starting at once.
_BOOTSTRAP_LOCK = 0x656E6B6579  # "enkey"

Cursor = psycopg.Cursor[dict[str, Any]]
_USE_KEY = sql.SQL("SELECT * FROM engramdb_use_api_key(%s)")


#: Background counts of keys without limits (ApiKeys' key cache), one statement per
#: organization: each (key, minute) adds to its minute window and its month's, and moves
#: last_used_at forward. Keys deleted meanwhile drop out in the join.
_ADD_USES = sql.SQL("""
WITH u AS (
    SELECT u.id, u.minute, u.n, u.at FROM unnest(%s::uuid[], %s::timestamptz[], %s::bigint[],
        %s::timestamptz[]) AS u(id, minute, n, at)
    JOIN api_keys k ON k.organization_id = %s AND k.id = u.id
), counted AS (
    INSERT INTO api_key_counters AS c (organization_id, api_key_id, period, window_start, count)
    SELECT %s, w.id, w.period, w.start, sum(w.n) FROM (
        SELECT id, 'minute' AS period, minute AS start, n FROM u
        UNION ALL SELECT id, 'month', date_trunc('month', minute, 'UTC'), n FROM u
    ) w GROUP BY w.id, w.period, w.start
    ON CONFLICT (organization_id, api_key_id, period, window_start)
    DO UPDATE SET count = c.count + excluded.count
)
UPDATE api_keys k SET last_used_at = greatest(k.last_used_at, l.at)
FROM (SELECT id, max(at) AS at FROM u GROUP BY id) l
WHERE k.organization_id = %s AND k.id = l.id
""")


def _uses_params(org: str, uses: Sequence[ApiKeyUses]) -> list[Any]:
    return [
        [u.key_id for u in uses],
        [u.minute for u in uses],
        [u.count for u in uses],
        [u.last_used_at for u in uses],
        org,
        org,
        org,
    ]


def _key(row: Mapping[str, Any]) -> ApiKey:
    return ApiKey.model_validate({k: row[k] for k in _KEY_FIELDS})


#: One audit log row, its values as :func:`audit_values` gives them.
AUDIT_INSERT = sql.SQL("INSERT INTO audit_log ({}) VALUES ({})").format(
    sql.SQL(", ").join(map(sql.Identifier, _AUDIT_FIELDS)),
    sql.SQL(", ").join(sql.Placeholder() * len(_AUDIT_FIELDS)),
)


def audit_values(entry: AuditEntry) -> list[Any]:
    """An audit entry's values in ``AUDIT_FIELDS`` order, JSON columns wrapped."""
    return [
        Jsonb(getattr(entry, f)) if f in ("before", "after") else getattr(entry, f)
        for f in _AUDIT_FIELDS
    ]


class SecurityMixin(StoreCore):
    """Mixed into PostgresStore; every tenant statement runs under the organization's setting."""

    if TYPE_CHECKING:
        url: str
        _listener: KeyChangeListener | None
        _listener_lock: threading.Lock

    # -- organizations ---------------------------------------------------------------------------

    def list_organizations(self, *, limit: int, after: str | None) -> list[Organization]:
        with self._tx(None) as cur:
            cur.execute(
                f"SELECT {_ORG_COLS} FROM engramdb_list_organizations(%s, %s)", (after, limit)
            )
            return [Organization.model_validate(r) for r in cur.fetchall()]

    def get_organization(self, org: str) -> Organization:
        with self._tx(org) as cur:
            cur.execute(
                f"SELECT {_ORG_COLS} FROM organizations WHERE id = %s AND deleted_at IS NULL",
                (org,),
            )
            row = cur.fetchone()
        if row is None:
            raise NotFound(f"organization {org!r} not found", details={"id": org})
        return Organization.model_validate(row)

    def update_organization(self, org: str, changes: Mapping[str, Any]) -> Organization:
        sets: list[sql.Composable] = [sql.SQL("updated_at = now()")]
        params: list[Any] = []
        for name in ("name", "metadata"):
            if name in changes:
                sets.append(sql.SQL("{} = %s").format(sql.Identifier(name)))
                params.append(Jsonb(changes[name]) if name == "metadata" else changes[name])
        with self._tx(org) as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE organizations SET {} WHERE id = %s AND deleted_at IS NULL RETURNING {}"
                ).format(sql.SQL(", ").join(sets), sql.SQL(_ORG_COLS)),
                [*params, org],
            )
            row = cur.fetchone()
        if row is None:
            raise NotFound(f"organization {org!r} not found", details={"id": org})
        return Organization.model_validate(row)

    def delete_organization(self, org: str, *, purge: bool = False) -> None:
        with self._tx(org) as cur:
            if purge:
                # A large tenant takes longer than the per-statement limit meant for requests;
                # an explicit purge is allowed to finish (it locks only the tenant's own rows).
                cur.execute("SET LOCAL statement_timeout = 0")
                # The cascades run as the tables' owner, which row-level security lets through
                # (referential actions are exempt from it), so every table follows this row.
                cur.execute("DELETE FROM organizations WHERE id = %s RETURNING id", (org,))
            else:
                cur.execute(
                    "UPDATE organizations SET deleted_at = now(), updated_at = now() "
                    "WHERE id = %s AND deleted_at IS NULL RETURNING id",
                    (org,),
                )
            if cur.fetchone() is None:
                raise NotFound(f"organization {org!r} not found", details={"id": org})
        self._key_changed(f"org:{org}")

    # -- API keys ----------------------------------------------------------------------------------

    def create_api_key(self, key: ApiKey, key_hash: str, *, only_if_none: bool = False) -> bool:
        org = key.organization_id
        with self._tx(org) as cur:
            if only_if_none:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_BOOTSTRAP_LOCK,))
                cur.execute("SELECT EXISTS (SELECT 1 FROM api_keys) AS any")
                row = cur.fetchone()
                if row is not None and row["any"]:
                    return False
            cur.execute(
                "INSERT INTO organizations (id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (org, org),
            )
            cur.execute(
                "INSERT INTO api_keys (organization_id, id, key_hash, prefix, name, scopes, tier, "
                "rate_limit, monthly_quota, enabled, expires_at, created_at, updated_at, "
                "created_by_id, last_updated_by_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    org,
                    key.id,
                    key_hash,
                    key.prefix,
                    key.name,
                    key.scopes,
                    key.tier,
                    key.rate_limit,
                    key.monthly_quota,
                    key.enabled,
                    key.expires_at,
                    key.created_at,
                    key.created_at,
                    key.created_by_id,
                    key.created_by_id,
                ),
            )
        return True

    def list_api_keys(
        self, org: str, *, limit: int, after: uuid.UUID | None, include_revoked: bool
    ) -> list[ApiKey]:
        where: list[sql.Composable] = [sql.SQL("organization_id = %s")]
        params: list[Any] = [org]
        if not include_revoked:
            where.append(sql.SQL("revoked_at IS NULL"))
        if after is not None:
            where.append(sql.SQL("id < %s"))
            params.append(after)
        with self._tx(org) as cur:
            cur.execute(
                sql.SQL("SELECT {} FROM api_keys WHERE {} ORDER BY id DESC LIMIT %s").format(
                    _KEY_COLS, sql.SQL(" AND ").join(where)
                ),
                [*params, limit],
            )
            return [_key(r) for r in cur.fetchall()]

    def find_api_keys(self, org: str, id_or_prefix: str) -> list[ApiKey]:
        try:
            key_id: uuid.UUID | None = uuid.UUID(id_or_prefix)
        except ValueError:
            key_id = None
        if key_id is None and len(id_or_prefix) < 4:
            raise InvalidInput("give a key id, or at least 4 characters of its prefix")
        with self._tx(org) as cur:
            cur.execute(
                sql.SQL(
                    "SELECT {} FROM api_keys WHERE organization_id = %s "
                    "AND (id = %s OR starts_with(prefix, %s)) ORDER BY id DESC LIMIT 10"
                ).format(_KEY_COLS),
                (org, key_id, id_or_prefix),
            )
            return [_key(r) for r in cur.fetchall()]

    def revoke_api_key(self, org: str, key_id: uuid.UUID, *, actor: str | None) -> ApiKey:
        with self._tx(org) as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()), enabled = false, "
                    "updated_at = now(), last_updated_by_id = %s "
                    "WHERE organization_id = %s AND id = %s RETURNING {}"
                ).format(_KEY_COLS),
                (actor, org, key_id),
            )
            row = cur.fetchone()
        if row is None:
            raise NotFound(f"API key {key_id} not found", details={"id": str(key_id)})
        self._key_changed(str(key_id))
        return _key(row)

    def update_api_key(
        self, org: str, key_id: uuid.UUID, changes: Mapping[str, Any], *, actor: str | None
    ) -> ApiKey:
        sets: list[sql.Composable] = [sql.SQL("updated_at = now(), last_updated_by_id = %s")]
        params: list[Any] = [actor]
        for name in _KEY_CHANGEABLE:
            if name in changes:
                sets.append(sql.SQL("{} = %s").format(sql.Identifier(name)))
                params.append(changes[name])
        with self._tx(org) as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE api_keys SET {} WHERE organization_id = %s AND id = %s "
                    "AND revoked_at IS NULL RETURNING {}"
                ).format(sql.SQL(", ").join(sets), _KEY_COLS),
                [*params, org, key_id],
            )
            row = cur.fetchone()
            if row is not None:
                self._key_changed(str(key_id))
                return _key(row)
            cur.execute("SELECT 1 FROM api_keys WHERE organization_id = %s AND id = %s",
                        (org, key_id))  # fmt: skip
            if cur.fetchone() is None:
                raise NotFound(f"API key {key_id} not found", details={"id": str(key_id)})
        raise Conflict(
            f"API key {key_id} is revoked: revocation is final, create a new key",
            details={"id": str(key_id)},
        )

    def use_api_key(self, key_hash: str) -> ApiKeyUse | None:
        # Every request runs this, so it is one round trip (no BEGIN / COMMIT of its own). A
        # crash losing the last few counts is a fair price for not waiting on a WAL flush per
        # request (the write itself is still atomic).
        rows = self._round_trip(None, _USE_KEY, (key_hash,), {"synchronous_commit": "off"})
        if not rows:
            return None
        row = rows[0]
        return ApiKeyUse(
            key=ApiKey.model_validate({k: row.get(k) for k in _KEY_FIELDS}),
            minute_count=int(row["minute_count"] or 0),
            month_count=int(row["month_count"] or 0),
        )

    def add_api_key_uses(self, org: str, uses: Sequence[ApiKeyUses]) -> None:
        if not uses:
            return
        with self._tx(org) as cur:
            cur.execute("SET LOCAL synchronous_commit = off")  # metering, as usage events
            cur.execute(_ADD_USES, _uses_params(org, uses))

    def watch_api_keys(self, on_change: Callable[[str | None], None]) -> KeyWatch | None:
        with self._listener_lock:
            if self._listener is None or self._listener.closed:
                self._listener = KeyChangeListener(self.url)
            listener = self._listener
        listener.subscribe(on_change)
        return Subscription(listener, on_change)

    def _key_changed(self, payload: str) -> None:
        # This process's own change reaches its subscribers now; the trigger's notice, which
        # tells the other processes, arrives here a moment later and is harmless twice.
        listener = self._listener
        if listener is not None:
            listener.changed(payload)

    def prune_api_key_counters(self, org: str, before: datetime) -> int:
        with self._tx(org) as cur:
            cur.execute(
                "DELETE FROM api_key_counters WHERE organization_id = %s "
                "AND period = 'minute' AND window_start < %s",
                (org, before),
            )
            return int(cur.rowcount)

    # -- usage and audit ---------------------------------------------------------------------------

    def insert_usage_events(self, events: Sequence[UsageEvent]) -> None:
        by_org: dict[str, list[UsageEvent]] = {}
        for e in events:
            by_org.setdefault(e.organization_id, []).append(e)
        # One INSERT of unnested arrays per organization: COPY is refused under row-level
        # security, and executemany would cost a round trip per event.
        types = ("text", "uuid", "uuid", "text", "text", "text", "integer", "real", "integer",
                 "timestamptz")  # fmt: skip
        # Events of an organization purged since they were queued are dropped, not an error
        # that would take the other organizations' events down with them.
        statement = sql.SQL(
            "INSERT INTO usage_events ({}) SELECT * FROM unnest({}) "
            "WHERE EXISTS (SELECT 1 FROM organizations WHERE id = %s)"
        ).format(
            sql.SQL(", ").join(map(sql.Identifier, _USAGE_FIELDS)),
            sql.SQL(", ").join(sql.SQL(f"%s::{t}[]") for t in types),
        )
        for org, batch in by_org.items():
            with self._tx(org) as cur:
                cur.execute("SET LOCAL synchronous_commit = off")  # metering is best effort
                cur.execute(
                    statement, [*([getattr(e, f) for e in batch] for f in _USAGE_FIELDS), org]
                )

    def usage_totals(
        self,
        org: str,
        *,
        since: datetime | None,
        api_key_id: uuid.UUID | None,
        subject: str | None = None,
    ) -> list[UsageTotal]:
        where: list[sql.Composable] = [sql.SQL("organization_id = %s")]
        params: list[Any] = [org]
        if since is not None:
            where.append(sql.SQL("created_at >= %s"))
            params.append(since)
        if api_key_id is not None:
            where.append(sql.SQL("api_key_id = %s"))
            params.append(api_key_id)
        if subject is not None:
            where.append(sql.SQL("subject = %s"))
            params.append(subject)
        with self._tx(org) as cur:
            cur.execute(
                sql.SQL(
                    "SELECT to_char(date_trunc('month', created_at, 'UTC'), 'YYYY-MM') AS month, "
                    "api_key_id, subject, count(*) AS requests, "
                    "count(*) FILTER (WHERE status_code >= 400) AS errors, "
                    "coalesce(sum(tokens), 0) AS tokens, avg(latency_ms) AS avg_latency_ms "
                    "FROM usage_events WHERE {} GROUP BY 1, 2, 3 "
                    "ORDER BY 1 DESC, requests DESC"
                ).format(sql.SQL(" AND ").join(where)),
                params,
            )
            return [
                UsageTotal(
                    month=r["month"],
                    api_key_id=r["api_key_id"],
                    subject=r["subject"],
                    requests=int(r["requests"]),
                    errors=int(r["errors"]),
                    tokens=int(r["tokens"]),
                    avg_latency_ms=round(float(r["avg_latency_ms"] or 0.0), 3),
                )
                for r in cur.fetchall()
            ]

    def insert_audit(self, entries: Sequence[AuditEntry]) -> None:
        by_org: dict[str, list[AuditEntry]] = {}
        for e in entries:
            by_org.setdefault(e.organization_id, []).append(e)
        for org, batch in by_org.items():
            with self._tx(org) as cur:
                cur.executemany(AUDIT_INSERT, [audit_values(e) for e in batch])

    def list_audit(
        self,
        org: str,
        *,
        limit: int,
        after: uuid.UUID | None,
        resource_type: str | None = None,
        resource_id: str | None = None,
    ) -> list[AuditEntry]:
        where: list[sql.Composable] = [sql.SQL("organization_id = %s")]
        params: list[Any] = [org]
        for name, value in (
            ("resource_type", resource_type),
            ("resource_id", resource_id),
        ):
            if value is not None:
                where.append(sql.SQL("{} = %s").format(sql.Identifier(name)))
                params.append(value)
        if after is not None:
            where.append(sql.SQL("id < %s"))
            params.append(after)
        with self._tx(org) as cur:
            cur.execute(
                sql.SQL("SELECT {} FROM audit_log WHERE {} ORDER BY id DESC LIMIT %s").format(
                    sql.SQL(", ").join(map(sql.Identifier, _AUDIT_FIELDS)),
                    sql.SQL(" AND ").join(where),
                ),
                [*params, limit],
            )
            return [AuditEntry.model_validate(r) for r in cur.fetchall()]
