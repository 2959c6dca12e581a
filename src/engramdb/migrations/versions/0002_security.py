"""API keys, usage events, audit log, row-level security, application role.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Tenancy is enforced twice: every query names its organization, and row-level security (forced,
so the owner is subject to it too) hides other organizations' rows from the application role the
server works as. That role (``engramdb_app``) is neither superuser nor owner; it gets DML on the
tenant tables and nothing else. Roles are cluster-wide, so the role is created once and never
dropped by a downgrade (other databases of the same server may use it).

API keys are looked up before the organization is known: ``engramdb_use_api_key(hash)`` is the
one way across tenants, a SECURITY DEFINER function that finds a key by the hash of its secret
only, counts the request in the key's rate-limit and quota windows, and returns the key.
"""

from alembic import op

from engramdb.migrations.rls import disable_tenant_rls, enable_tenant_rls

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APP_ROLE = "engramdb_app"

#: Tables of 0001 that hold one organization's rows.
_EXISTING_TENANT_TABLES = ("users", "agents", "rooms", "memories", "memory_history")
_NEW_TENANT_TABLES = ("api_keys", "api_key_counters", "usage_events", "audit_log")

_FIND_KEY_COLUMNS = """
    organization_id text, id uuid, prefix text, name text, scopes text[], tier text,
    rate_limit integer, monthly_quota bigint, enabled boolean, expires_at timestamptz,
    revoked_at timestamptz, last_used_at timestamptz, created_at timestamptz,
    minute_count bigint, month_count bigint
"""

POSTGRES_UP: list[str] = [
    f"""
    DO $$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
      END IF;
      -- A non-superuser owner must be a member to SET ROLE to it (superusers always can).
      IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT {APP_ROLE} TO %I', current_user);
      END IF;
    END $$""",
    """
    CREATE TABLE api_keys (
        organization_id text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
        id uuid NOT NULL,
        key_hash text NOT NULL,
        prefix text NOT NULL,
        name text NOT NULL,
        scopes text[] NOT NULL,
        tier text NOT NULL DEFAULT 'free',
        rate_limit integer CHECK (rate_limit IS NULL OR rate_limit > 0),
        monthly_quota bigint CHECK (monthly_quota IS NULL OR monthly_quota > 0),
        enabled boolean NOT NULL DEFAULT true,
        expires_at timestamptz,
        last_used_at timestamptz,
        revoked_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        created_by_id text,
        last_updated_by_id text,
        PRIMARY KEY (organization_id, id),
        UNIQUE (organization_id, key_hash),
        CHECK (scopes <@ ARRAY['read', 'write', 'admin']::text[] AND cardinality(scopes) > 0)
    )""",
    # Lookups by hash come before the organization is known (see engramdb_use_api_key).
    "CREATE INDEX api_keys_hash_idx ON api_keys (key_hash)",
    "CREATE INDEX api_keys_prefix_idx ON api_keys (organization_id, prefix)",
    # Rate-limit (per minute) and quota (per month) windows, shared by every server process.
    """
    CREATE TABLE api_key_counters (
        organization_id text NOT NULL,
        api_key_id uuid NOT NULL,
        period text NOT NULL CHECK (period IN ('minute', 'month')),
        window_start timestamptz NOT NULL,
        count bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (organization_id, api_key_id, period, window_start),
        FOREIGN KEY (organization_id, api_key_id)
            REFERENCES api_keys (organization_id, id) ON DELETE CASCADE
    )""",
    """
    CREATE TABLE usage_events (
        organization_id text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
        id uuid NOT NULL,
        api_key_id uuid,
        subject text,
        endpoint text NOT NULL,
        method text NOT NULL,
        status_code integer NOT NULL,
        latency_ms real NOT NULL,
        tokens integer NOT NULL DEFAULT 0,
        cost_usd numeric(12, 6) NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (organization_id, id)
    )""",
    "CREATE INDEX usage_events_key_idx ON usage_events (organization_id, api_key_id, created_at)",
    "CREATE INDEX usage_events_created_idx ON usage_events (organization_id, created_at DESC)",
    """
    CREATE TABLE audit_log (
        organization_id text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
        id uuid NOT NULL,
        actor_type text NOT NULL,
        actor_id text,
        action text NOT NULL,
        resource_type text NOT NULL,
        resource_id text,
        before jsonb,
        after jsonb,
        request_id text,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (organization_id, id)
    )""",
    "CREATE INDEX audit_log_resource_idx ON audit_log (organization_id, resource_type, resource_id)",
    # Row-level security on every tenant table; organizations are keyed on their own id.
    *[s for t in (*_EXISTING_TENANT_TABLES, *_NEW_TENANT_TABLES) for s in enable_tenant_rls(t)],
    *enable_tenant_rls("organizations", "id"),
    # The owner (who runs migrations and owns the SECURITY DEFINER functions) may read keys and
    # organizations across tenants; the application role may not.
    "CREATE POLICY owner_lookup ON api_keys FOR SELECT TO CURRENT_USER USING (true)",
    "CREATE POLICY owner_lookup ON organizations FOR SELECT TO CURRENT_USER USING (true)",
    f"""
    CREATE FUNCTION engramdb_use_api_key(p_hash text) RETURNS TABLE ({_FIND_KEY_COLUMNS})
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    #variable_conflict use_column
    DECLARE
      k public.api_keys%ROWTYPE;
      m bigint := 0;
      q bigint := 0;
    BEGIN
      SELECT ak.* INTO k FROM public.api_keys ak
        JOIN public.organizations o ON o.id = ak.organization_id AND o.deleted_at IS NULL
        WHERE ak.key_hash = p_hash;
      IF NOT FOUND THEN
        RETURN;
      END IF;
      IF k.enabled AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
      THEN
        -- From here on the key's organization is known: row-level security applies as usual.
        PERFORM set_config('engramdb.organization_id', k.organization_id, true);
        INSERT INTO public.api_key_counters AS c
          VALUES (k.organization_id, k.id, 'minute', date_trunc('minute', now()), 1)
          ON CONFLICT (organization_id, api_key_id, period, window_start)
          DO UPDATE SET count = c.count + 1
          RETURNING c.count INTO m;
        IF k.rate_limit IS NULL OR m <= k.rate_limit THEN
          -- Requests refused for the quota are not counted against it.
          INSERT INTO public.api_key_counters AS c
            VALUES (k.organization_id, k.id, 'month', date_trunc('month', now(), 'UTC'), 1)
            ON CONFLICT (organization_id, api_key_id, period, window_start)
            DO UPDATE SET count = c.count + 1
              WHERE k.monthly_quota IS NULL OR c.count < k.monthly_quota
            RETURNING c.count INTO q;
          IF q IS NULL OR q = 0 THEN
            q := k.monthly_quota + 1;
          END IF;
          -- Throttled: a hot key would otherwise rewrite its row on every request.
          UPDATE public.api_keys SET last_used_at = now()
            WHERE api_keys.organization_id = k.organization_id AND api_keys.id = k.id
              AND (api_keys.last_used_at IS NULL
                   OR api_keys.last_used_at < now() - interval '5 seconds');
        END IF;
      END IF;
      RETURN QUERY SELECT k.organization_id, k.id, k.prefix, k.name, k.scopes, k.tier,
        k.rate_limit, k.monthly_quota, k.enabled, k.expires_at, k.revoked_at, k.last_used_at,
        k.created_at, m, q;
    END $$""",
    # Operators list organizations across tenants; nothing but ids, names and times leaves.
    """
    CREATE FUNCTION engramdb_list_organizations(p_after text, p_limit integer)
    RETURNS TABLE (id text, name text, metadata jsonb, created_at timestamptz,
                   updated_at timestamptz, deleted_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
      SELECT o.id, o.name, o.metadata, o.created_at, o.updated_at, o.deleted_at
      FROM public.organizations o
      WHERE o.deleted_at IS NULL AND (p_after IS NULL OR o.id > p_after)
      ORDER BY o.id LIMIT p_limit
    $$""",
    "REVOKE ALL ON FUNCTION engramdb_use_api_key(text) FROM PUBLIC",
    "REVOKE ALL ON FUNCTION engramdb_list_organizations(text, integer) FROM PUBLIC",
    f"GRANT EXECUTE ON FUNCTION engramdb_use_api_key(text) TO {APP_ROLE}",
    f"GRANT EXECUTE ON FUNCTION engramdb_list_organizations(text, integer) TO {APP_ROLE}",
    # The application role: DML on data tables, read-only on the embedding-space registry
    # (indexes are DDL, made by the owner), nothing on Alembic's bookkeeping.
    f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}",
    f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}",
    f"REVOKE ALL ON alembic_version FROM {APP_ROLE}",
    f"REVOKE INSERT, UPDATE, DELETE ON embedding_indexes FROM {APP_ROLE}",
    f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}",
    # Tables later migrations create (as this owner) are granted the same way.
    f"ALTER DEFAULT PRIVILEGES IN SCHEMA public "
    f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}",
    f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE}",
]

POSTGRES_DOWN: list[str] = [
    f"ALTER DEFAULT PRIVILEGES IN SCHEMA public "
    f"REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM {APP_ROLE}",
    f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE USAGE, SELECT ON SEQUENCES FROM {APP_ROLE}",
    "DROP FUNCTION engramdb_list_organizations(text, integer)",
    "DROP FUNCTION engramdb_use_api_key(text)",
    "DROP POLICY owner_lookup ON organizations",
    *disable_tenant_rls("organizations"),
    *[s for t in _EXISTING_TENANT_TABLES for s in disable_tenant_rls(t)],
    "DROP TABLE audit_log",
    "DROP TABLE usage_events",
    "DROP TABLE api_key_counters",
    "DROP TABLE api_keys",
    f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {APP_ROLE}",
    f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {APP_ROLE}",
    f"REVOKE USAGE ON SCHEMA public FROM {APP_ROLE}",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES_UP:
            op.execute(statement)
    else:
        from engramdb.store.sqlite import schema

        schema.upgrade(op, revision)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES_DOWN:
            op.execute(statement)
    else:
        from engramdb.store.sqlite import schema

        schema.downgrade(op, revision)
