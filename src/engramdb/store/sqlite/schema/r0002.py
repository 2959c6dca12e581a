"""SQLite DDL of revision 0002: API keys and their rate-limit windows, usage events, audit log.

The same tables as on PostgreSQL. What PostgreSQL adds here has no SQLite counterpart and needs
none: row-level security and the application role (tenant isolation is in every query of
``store/sqlite``), and the SECURITY DEFINER functions (``engramdb_use_api_key`` is one write
transaction in ``store/sqlite/security.py``). The scopes are checked by the service, as a CHECK
constraint cannot look inside a JSON array here.
"""

from __future__ import annotations

from . import NOW_US as _NOW

UP: list[str] = [
    f"""
    CREATE TABLE api_keys (
        organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
        id BLOB NOT NULL CHECK (length(id) = 16),
        key_hash TEXT NOT NULL,
        prefix TEXT NOT NULL,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL CHECK (json_valid(scopes) AND json_array_length(scopes) > 0),
        tier TEXT NOT NULL DEFAULT 'free',
        rate_limit INTEGER CHECK (rate_limit IS NULL OR rate_limit > 0),
        monthly_quota INTEGER CHECK (monthly_quota IS NULL OR monthly_quota > 0),
        enabled INTEGER NOT NULL DEFAULT 1,
        expires_at INTEGER,
        last_used_at INTEGER,
        revoked_at INTEGER,
        created_at INTEGER NOT NULL DEFAULT {_NOW},
        updated_at INTEGER NOT NULL DEFAULT {_NOW},
        created_by_id TEXT,
        last_updated_by_id TEXT,
        PRIMARY KEY (organization_id, id),
        UNIQUE (organization_id, key_hash)
    ) STRICT""",
    # Lookups by hash come before the organization is known.
    "CREATE INDEX api_keys_hash_idx ON api_keys (key_hash)",
    "CREATE INDEX api_keys_prefix_idx ON api_keys (organization_id, prefix)",
    """
    CREATE TABLE api_key_counters (
        organization_id TEXT NOT NULL,
        api_key_id BLOB NOT NULL,
        period TEXT NOT NULL CHECK (period IN ('minute', 'month')),
        window_start INTEGER NOT NULL,
        count INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (organization_id, api_key_id, period, window_start),
        FOREIGN KEY (organization_id, api_key_id)
            REFERENCES api_keys (organization_id, id) ON DELETE CASCADE
    ) STRICT""",
    f"""
    CREATE TABLE usage_events (
        organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
        id BLOB NOT NULL CHECK (length(id) = 16),
        api_key_id BLOB,
        subject TEXT,
        endpoint TEXT NOT NULL,
        method TEXT NOT NULL,
        status_code INTEGER NOT NULL,
        latency_ms REAL NOT NULL,
        tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL DEFAULT {_NOW},
        PRIMARY KEY (organization_id, id)
    ) STRICT""",
    "CREATE INDEX usage_events_key_idx ON usage_events (organization_id, api_key_id, created_at)",
    "CREATE INDEX usage_events_created_idx ON usage_events (organization_id, created_at)",
    f"""
    CREATE TABLE audit_log (
        organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
        id BLOB NOT NULL CHECK (length(id) = 16),
        actor_type TEXT NOT NULL,
        actor_id TEXT,
        action TEXT NOT NULL,
        resource_type TEXT NOT NULL,
        resource_id TEXT,
        before TEXT CHECK (before IS NULL OR json_valid(before)),
        after TEXT CHECK (after IS NULL OR json_valid(after)),
        request_id TEXT,
        created_at INTEGER NOT NULL DEFAULT {_NOW},
        PRIMARY KEY (organization_id, id)
    ) STRICT""",
    "CREATE INDEX audit_log_resource_idx ON audit_log (organization_id, resource_type, resource_id)",
]

DOWN: list[str] = [
    "DROP TABLE audit_log",
    "DROP TABLE usage_events",
    "DROP TABLE api_key_counters",
    "DROP TABLE api_keys",
]
