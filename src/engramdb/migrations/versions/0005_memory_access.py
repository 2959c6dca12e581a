"""Access counts in a narrow table of their own (``memory_access``), not in the memories row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

Counting an access by updating the memory's row writes a new version of a 2 kB row, and a full
page (four such rows fill one) leaves no room for it beside the old one, so the update cannot
be HOT: every index of the table gets an entry for the new version, the HNSW graph included.
Measured on a 100k store: 1,000 access counts took 1.3 s of database time (69% not HOT), so
each search returning ten memories cost the server about 13 ms of background work, several
times the search itself. ``memory_access`` holds ``(organization_id, memory_id, access_count,
last_accessed_at)`` rows of a few dozen bytes, upserted in batches; reads add it to the
memory's own columns, which keep whatever was counted before this revision.

The foreign key removes a memory's counts with the memory (purge, retention). Row-level
security as on every tenant table.
"""

from alembic import op

from engramdb.migrations.rls import disable_tenant_rls, enable_tenant_rls

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

POSTGRES_UP = [
    """
    CREATE TABLE memory_access (
        organization_id text NOT NULL,
        memory_id uuid NOT NULL,
        access_count bigint NOT NULL DEFAULT 0,
        last_accessed_at timestamptz,
        PRIMARY KEY (organization_id, memory_id),
        FOREIGN KEY (organization_id, memory_id) REFERENCES memories (organization_id, id)
            ON DELETE CASCADE
    )
    """,
    *enable_tenant_rls("memory_access"),
]

POSTGRES_DOWN = [
    # Counts taken since 0005 go back into the rows they belong to (as the owner, across every
    # organization: forced row-level security is lifted for the statement's duration).
    "ALTER TABLE memories NO FORCE ROW LEVEL SECURITY",
    "ALTER TABLE memory_access NO FORCE ROW LEVEL SECURITY",
    """
    UPDATE memories m SET access_count = m.access_count + a.access_count,
        last_accessed_at = greatest(m.last_accessed_at, a.last_accessed_at)
    FROM memory_access a WHERE a.organization_id = m.organization_id AND a.memory_id = m.id
    """,
    "ALTER TABLE memories FORCE ROW LEVEL SECURITY",
    *disable_tenant_rls("memory_access"),
    "DROP TABLE memory_access",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES_UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES_DOWN:
            op.execute(statement)
