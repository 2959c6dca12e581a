"""SQLite side of tenancy and security: organizations, API keys, usage events, audit log.

The same behaviour as ``store/postgres/security.py``. Where PostgreSQL relies on row-level
security, each statement here names its organization; where it uses SECURITY DEFINER functions
(a key found by its hash before the organization is known), this is one write transaction:
``BEGIN IMMEDIATE`` makes the count of a request atomic across every process on the file, so
rate limits and quotas hold for several server workers too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ...errors import Conflict, InvalidInput, NotFound
from ...models import utcnow
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
from .values import from_micros, from_uuid, to_json, to_micros, to_uuid

if TYPE_CHECKING:
    from .connection import Database
    from .vectors import VectorCache

__all__ = ["SQLiteSecurity"]

_KEY_COLS = ", ".join(_KEY_FIELDS)
_KEY_TIMES = ("expires_at", "last_used_at", "revoked_at", "created_at")
#: What update_api_key may change, and how each value is stored.
_KEY_CHANGEABLE: dict[str, Any] = {
    "name": str,
    "enabled": lambda v: int(bool(v)),
    "rate_limit": lambda v: v,
    "monthly_quota": lambda v: v,
    "expires_at": to_micros,
}
#: A key's last_used_at is rewritten at most this often (a hot key would rewrite it per request).
_LAST_USED_EVERY = timedelta(seconds=5)


def _key(row: Sequence[Any]) -> ApiKey:
    values = dict(zip(_KEY_FIELDS, row, strict=True))
    values["id"] = from_uuid(values["id"])
    values["scopes"] = json.loads(values["scopes"])
    values["enabled"] = bool(values["enabled"])
    for name in _KEY_TIMES:
        values[name] = from_micros(values[name])
    return ApiKey.model_validate(values)


def _org(row: Sequence[Any]) -> Organization:
    id_, name, metadata, created_at, updated_at, deleted_at = row
    return Organization(
        id=id_,
        name=name,
        metadata=json.loads(metadata),
        created_at=from_micros(created_at),
        updated_at=from_micros(updated_at),
        deleted_at=from_micros(deleted_at),
    )


def _audit(row: Sequence[Any]) -> AuditEntry:
    values = dict(zip(_AUDIT_FIELDS, row, strict=True))
    values["id"] = from_uuid(values["id"])
    for name in ("before", "after"):
        values[name] = None if values[name] is None else json.loads(values[name])
    values["created_at"] = from_micros(values["created_at"])
    return AuditEntry.model_validate(values)


def _windows(now: datetime) -> tuple[int, int]:
    """The starts of the current minute and (UTC) month, in microseconds."""
    now = now.astimezone(UTC)
    minute = now.replace(second=0, microsecond=0)
    month = minute.replace(day=1, hour=0, minute=0)
    return int(to_micros(minute) or 0), int(to_micros(month) or 0)


def _not_found(key_id: uuid.UUID) -> NotFound:
    return NotFound(f"API key {key_id} not found", details={"id": str(key_id)})


def write_audit(conn: Any, entries: Sequence[AuditEntry]) -> None:
    """Insert audit entries in the caller's write transaction."""
    conn.executemany(
        f"INSERT INTO audit_log ({', '.join(_AUDIT_FIELDS)}) "
        f"VALUES ({', '.join('?' * len(_AUDIT_FIELDS))})",
        [
            (
                e.organization_id, to_uuid(e.id), e.actor_type, e.actor_id, e.action,
                e.resource_type, e.resource_id,
                None if e.before is None else to_json(e.before),
                None if e.after is None else to_json(e.after),
                e.request_id, to_micros(e.created_at),
            )
            for e in entries
        ],
    )  # fmt: skip


class SQLiteSecurity:
    """Mixed into SQLiteStore."""

    if TYPE_CHECKING:
        _vectors: VectorCache

        @property
        def db(self) -> Database: ...

        @staticmethod
        def _trim_vector_changes(conn: Any) -> None: ...

    # -- organizations ---------------------------------------------------------------------------

    def list_organizations(self, *, limit: int, after: str | None) -> list[Organization]:
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT {_ORG_COLS} FROM organizations WHERE deleted_at IS NULL "
                "AND (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2",
                (after, limit),
            ).fetchall()
        return [_org(r) for r in rows]

    def get_organization(self, org: str) -> Organization:
        with self.db.read() as conn:
            row = conn.execute(
                f"SELECT {_ORG_COLS} FROM organizations WHERE id = ? AND deleted_at IS NULL",
                (org,),
            ).fetchone()
        if row is None:
            raise NotFound(f"organization {org!r} not found", details={"id": org})
        return _org(row)

    def update_organization(self, org: str, changes: Mapping[str, Any]) -> Organization:
        sets = ["updated_at = ?"]
        params: list[Any] = [to_micros(utcnow())]
        for name in ("name", "metadata"):
            if name in changes:
                sets.append(f"{name} = ?")
                params.append(to_json(changes[name]) if name == "metadata" else changes[name])
        with self.db.write() as conn:
            row = conn.execute(
                f"UPDATE organizations SET {', '.join(sets)} "
                f"WHERE id = ? AND deleted_at IS NULL RETURNING {_ORG_COLS}",
                [*params, org],
            ).fetchone()
        if row is None:
            raise NotFound(f"organization {org!r} not found", details={"id": org})
        return _org(row)

    def delete_organization(self, org: str, *, purge: bool = False) -> None:
        if purge:
            self._purge_organization(org)
            return
        now = to_micros(utcnow())
        with self.db.write() as conn:
            row = conn.execute(
                "UPDATE organizations SET deleted_at = ?, updated_at = ? "
                "WHERE id = ? AND deleted_at IS NULL RETURNING id",
                (now, now, org),
            ).fetchone()
        if row is None:
            raise NotFound(f"organization {org!r} not found", details={"id": org})

    def _purge_organization(self, org: str) -> None:
        # Every tenant table follows by ON DELETE CASCADE (foreign keys are on for every
        # connection), the triggers of the schema included: full text, vector change log.
        with self.db.write() as conn:
            row = conn.execute(
                "DELETE FROM organizations WHERE id = ? RETURNING id", (org,)
            ).fetchone()
            if row is None:
                raise NotFound(f"organization {org!r} not found", details={"id": org})
            self._trim_vector_changes(conn)
        # This process's vectors of the organization go now; other processes drop them on
        # their next search, from the change log (or reload in full if it was trimmed).
        with self._vectors.lock:
            self._vectors.forget(org)

    # -- API keys ----------------------------------------------------------------------------------

    def create_api_key(self, key: ApiKey, key_hash: str, *, only_if_none: bool = False) -> bool:
        org = key.organization_id
        # The write transaction is what PostgreSQL's advisory lock is for first-start keys:
        # of several processes starting at once, one creates the key, the others see it.
        with self.db.write() as conn:
            if only_if_none and conn.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone():
                return False
            conn.execute(
                "INSERT INTO organizations (id, name) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (org, org),
            )
            created = to_micros(key.created_at)
            conn.execute(
                "INSERT INTO api_keys (organization_id, id, key_hash, prefix, name, scopes, tier, "
                "rate_limit, monthly_quota, enabled, expires_at, created_at, updated_at, "
                "created_by_id, last_updated_by_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    org, to_uuid(key.id), key_hash, key.prefix, key.name, to_json(key.scopes),
                    key.tier, key.rate_limit, key.monthly_quota, int(key.enabled),
                    to_micros(key.expires_at), created, created, key.created_by_id,
                    key.created_by_id,
                ),
            )  # fmt: skip
        return True

    def list_api_keys(
        self, org: str, *, limit: int, after: uuid.UUID | None, include_revoked: bool
    ) -> list[ApiKey]:
        where = ["organization_id = ?"]
        params: list[Any] = [org]
        if not include_revoked:
            where.append("revoked_at IS NULL")
        if after is not None:
            where.append("id < ?")
            params.append(to_uuid(after))
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT {_KEY_COLS} FROM api_keys WHERE {' AND '.join(where)} "
                "ORDER BY id DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [_key(r) for r in rows]

    def find_api_keys(self, org: str, id_or_prefix: str) -> list[ApiKey]:
        try:
            key_id: bytes | None = to_uuid(uuid.UUID(id_or_prefix))
        except ValueError:
            key_id = None
        if key_id is None and len(id_or_prefix) < 4:
            raise InvalidInput("give a key id, or at least 4 characters of its prefix")
        with self.db.read() as conn:
            # substr, not LIKE: a prefix match that is case-sensitive and has no wildcards.
            rows = conn.execute(
                f"SELECT {_KEY_COLS} FROM api_keys WHERE organization_id = ? "
                "AND (id = ? OR substr(prefix, 1, length(?3)) = ?3) ORDER BY id DESC LIMIT 10",
                (org, key_id, id_or_prefix),
            ).fetchall()
        return [_key(r) for r in rows]

    def revoke_api_key(self, org: str, key_id: uuid.UUID, *, actor: str | None) -> ApiKey:
        now = to_micros(utcnow())
        with self.db.write() as conn:
            row = conn.execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?1), enabled = 0, "
                "updated_at = ?1, last_updated_by_id = ?2 "
                f"WHERE organization_id = ?3 AND id = ?4 RETURNING {_KEY_COLS}",
                (now, actor, org, to_uuid(key_id)),
            ).fetchone()
        if row is None:
            raise _not_found(key_id)
        return _key(row)

    def update_api_key(
        self, org: str, key_id: uuid.UUID, changes: Mapping[str, Any], *, actor: str | None
    ) -> ApiKey:
        sets = ["updated_at = ?", "last_updated_by_id = ?"]
        params: list[Any] = [to_micros(utcnow()), actor]
        for name, codec in _KEY_CHANGEABLE.items():
            if name in changes:
                sets.append(f"{name} = ?")
                params.append(None if changes[name] is None else codec(changes[name]))
        with self.db.write() as conn:
            row = conn.execute(
                f"UPDATE api_keys SET {', '.join(sets)} WHERE organization_id = ? AND id = ? "
                f"AND revoked_at IS NULL RETURNING {_KEY_COLS}",
                [*params, org, to_uuid(key_id)],
            ).fetchone()
            if row is not None:
                return _key(row)
            exists = conn.execute(
                "SELECT 1 FROM api_keys WHERE organization_id = ? AND id = ?",
                (org, to_uuid(key_id)),
            ).fetchone()
        if exists is None:
            raise _not_found(key_id)
        raise Conflict(
            f"API key {key_id} is revoked: revocation is final, create a new key",
            details={"id": str(key_id)},
        )

    def use_api_key(self, key_hash: str) -> ApiKeyUse | None:
        now = utcnow()
        now_us = to_micros(now)
        minute, month = _windows(now)
        with self.db.write() as conn:
            row = conn.execute(
                f"SELECT {', '.join('k.' + f for f in _KEY_FIELDS)} FROM api_keys k "
                "JOIN organizations o ON o.id = k.organization_id AND o.deleted_at IS NULL "
                "WHERE k.key_hash = ?",
                (key_hash,),
            ).fetchone()
            if row is None:
                return None
            key = _key(row)
            m = q = 0
            usable = key.enabled and key.revoked_at is None
            if usable and (key.expires_at is None or key.expires_at > now):
                org, kid = key.organization_id, row[0]
                (m,) = conn.execute(
                    "INSERT INTO api_key_counters VALUES (?, ?, 'minute', ?, 1) "
                    "ON CONFLICT DO UPDATE SET count = count + 1 RETURNING count",
                    (org, kid, minute),
                ).fetchone()
                if key.rate_limit is None or m <= key.rate_limit:
                    # Requests refused for the quota are not counted against it.
                    counted = conn.execute(
                        "INSERT INTO api_key_counters VALUES (?1, ?2, 'month', ?3, 1) "
                        "ON CONFLICT DO UPDATE SET count = count + 1 "
                        "WHERE ?4 IS NULL OR count < ?4 RETURNING count",
                        (org, kid, month, key.monthly_quota),
                    ).fetchone()
                    q = counted[0] if counted else int(key.monthly_quota or 0) + 1
                    conn.execute(
                        "UPDATE api_keys SET last_used_at = ? WHERE organization_id = ? "
                        "AND id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                        (now_us, org, kid, to_micros(now - _LAST_USED_EVERY)),
                    )
        return ApiKeyUse(key=key, minute_count=int(m), month_count=int(q))

    def add_api_key_uses(self, org: str, uses: Sequence[ApiKeyUses]) -> None:
        with self.db.write() as conn:
            for u in uses:
                known = conn.execute(
                    "SELECT 1 FROM api_keys WHERE organization_id = ? AND id = ?",
                    (org, to_uuid(u.key_id)),
                ).fetchone()
                if known is None:  # deleted since it was counted
                    continue
                minute, month = _windows(u.minute)
                for period, start in (("minute", minute), ("month", month)):
                    conn.execute(
                        "INSERT INTO api_key_counters VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT DO UPDATE SET count = count + excluded.count",
                        (org, to_uuid(u.key_id), period, start, u.count),
                    )
                at = to_micros(u.last_used_at)
                conn.execute(
                    "UPDATE api_keys SET last_used_at = max(coalesce(last_used_at, ?1), ?1) "
                    "WHERE organization_id = ?2 AND id = ?3",
                    (at, org, to_uuid(u.key_id)),
                )

    def watch_api_keys(self, on_change: Callable[[str | None], None]) -> KeyWatch | None:
        # Another process may change a key in the same file, and SQLite cannot tell this one:
        # keys are looked up on every request (a local read, no network round trip).
        return None

    def prune_api_key_counters(self, org: str, before: datetime) -> int:
        with self.db.write() as conn:
            cur = conn.execute(
                "DELETE FROM api_key_counters WHERE organization_id = ? "
                "AND period = 'minute' AND window_start < ?",
                (org, to_micros(before)),
            )
            return int(cur.rowcount)

    # -- usage and audit ---------------------------------------------------------------------------

    def insert_usage_events(self, events: Sequence[UsageEvent]) -> None:
        if not events:
            return
        with self.db.write() as conn:
            # Events of an organization purged since they were queued are dropped, not an
            # error that would take the other organizations' events down with them.
            conn.executemany(
                f"INSERT INTO usage_events ({', '.join(_USAGE_FIELDS)}) "
                f"SELECT {', '.join(f'?{i + 1}' for i in range(len(_USAGE_FIELDS)))} "
                "WHERE EXISTS (SELECT 1 FROM organizations WHERE id = ?1)",
                [
                    (
                        e.organization_id, to_uuid(e.id),
                        None if e.api_key_id is None else to_uuid(e.api_key_id), e.subject,
                        e.endpoint, e.method, e.status_code, e.latency_ms, e.tokens,
                        to_micros(e.created_at),
                    )
                    for e in events
                ],
            )  # fmt: skip

    def usage_totals(
        self,
        org: str,
        *,
        since: datetime | None,
        api_key_id: uuid.UUID | None,
        subject: str | None = None,
    ) -> list[UsageTotal]:
        where = ["organization_id = ?"]
        params: list[Any] = [org]
        if since is not None:
            where.append("created_at >= ?")
            params.append(to_micros(since))
        if api_key_id is not None:
            where.append("api_key_id = ?")
            params.append(to_uuid(api_key_id))
        if subject is not None:
            where.append("subject = ?")
            params.append(subject)
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT strftime('%Y-%m', created_at / 1000000, 'unixepoch') AS month, "
                "api_key_id, subject, count(*) AS requests, "
                "count(*) FILTER (WHERE status_code >= 400), coalesce(sum(tokens), 0), "
                f"avg(latency_ms) FROM usage_events WHERE {' AND '.join(where)} "
                "GROUP BY 1, 2, 3 ORDER BY 1 DESC, requests DESC",
                params,
            ).fetchall()
        return [
            UsageTotal(
                month=month,
                api_key_id=None if key is None else from_uuid(key),
                subject=subj,
                requests=int(requests),
                errors=int(errors),
                tokens=int(tokens),
                avg_latency_ms=round(float(latency or 0.0), 3),
            )
            for month, key, subj, requests, errors, tokens, latency in rows
        ]

    def insert_audit(self, entries: Sequence[AuditEntry]) -> None:
        if not entries:
            return
        with self.db.write() as conn:
            write_audit(conn, entries)

    def list_audit(
        self,
        org: str,
        *,
        limit: int,
        after: uuid.UUID | None,
        resource_type: str | None = None,
        resource_id: str | None = None,
    ) -> list[AuditEntry]:
        where = ["organization_id = ?"]
        params: list[Any] = [org]
        for name, value in (("resource_type", resource_type), ("resource_id", resource_id)):
            if value is not None:
                where.append(f"{name} = ?")
                params.append(value)
        if after is not None:
            where.append("id < ?")
            params.append(to_uuid(after))
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(_AUDIT_FIELDS)} FROM audit_log "
                f"WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [_audit(r) for r in rows]
