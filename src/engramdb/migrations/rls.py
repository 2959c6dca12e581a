"""Row-level security statements shared by migrations: one policy shape for every tenant table.

The policy reads the tenant from the setting ``engramdb.organization_id``, which the PostgreSQL
store gives every statement it runs (store/postgres/session.py). FORCE makes it apply to the
table owner too; only superusers and roles with BYPASSRLS (used for migrations and maintenance)
see across tenants.
"""

from __future__ import annotations

__all__ = ["ORG_SETTING", "disable_tenant_rls", "enable_tenant_rls"]

ORG_SETTING = "engramdb.organization_id"


def enable_tenant_rls(table: str, column: str = "organization_id") -> list[str]:
    """Statements that enable and force RLS on ``table``, keyed on ``column``."""
    condition = f"{column} = current_setting('{ORG_SETTING}', true)"
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {table} USING ({condition}) WITH CHECK ({condition})",
    ]


def disable_tenant_rls(table: str) -> list[str]:
    return [
        f"DROP POLICY IF EXISTS tenant_isolation ON {table}",
        f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
    ]
