"""Change notices for API keys: ``NOTIFY engramdb_api_keys`` when a key or its organization
changes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

A server remembers keys without limits once it has found them (no round trip per request, see
``engramdb.service.key_cache``). Whoever changes a key -- another server process, the
``engramdb keys`` command, plain SQL -- must reach every such memory at once, so the change
itself announces it: the payload is the key's id, or ``org:<id>`` when an organization is
deleted (its keys stop working). ``last_used_at`` alone is not a change worth announcing (it
moves on every use), so the key trigger names the other columns.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CHANNEL = "engramdb_api_keys"

POSTGRES_UP = [
    f"""
    CREATE FUNCTION engramdb_api_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('{CHANNEL}', OLD.id::text);
      RETURN NULL;
    END $$""",
    f"""
    CREATE FUNCTION engramdb_organization_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('{CHANNEL}', 'org:' || OLD.id);
      RETURN NULL;
    END $$""",
    """
    CREATE TRIGGER api_keys_changed
    AFTER UPDATE OF organization_id, id, key_hash, prefix, name, scopes, tier, rate_limit,
        monthly_quota, enabled, expires_at, revoked_at OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION engramdb_api_key_changed()""",
    """
    CREATE TRIGGER organizations_changed
    AFTER UPDATE OF id, deleted_at OR DELETE ON organizations
    FOR EACH ROW EXECUTE FUNCTION engramdb_organization_changed()""",
]

POSTGRES_DOWN = [
    "DROP TRIGGER organizations_changed ON organizations",
    "DROP TRIGGER api_keys_changed ON api_keys",
    "DROP FUNCTION engramdb_organization_changed()",
    "DROP FUNCTION engramdb_api_key_changed()",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES_UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES_DOWN:
            op.execute(statement)
