"""Initial schema: organizations, users, agents, rooms, memories, memory history, vector indexes.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Every tenant-owned table carries ``organization_id`` in its primary key, unique constraints and
foreign keys, so the schema can be distributed by organization (Citus) unchanged.
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_AUDIT = """
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    created_by_id text,
    last_updated_by_id text,
    deleted_at timestamptz
"""

POSTGRES_UP = [
    "CREATE EXTENSION IF NOT EXISTS vector",
    f"""
    CREATE TABLE organizations (
        id text PRIMARY KEY,
        name text NOT NULL,
        metadata jsonb NOT NULL DEFAULT '{{}}',
        {_AUDIT}
    )""",
    "INSERT INTO organizations (id, name) VALUES ('default', 'Default organization')",
    f"""
    CREATE TABLE users (
        organization_id text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
        id text NOT NULL,
        name text,
        username text,
        email text,
        avatar_url text,
        status text NOT NULL DEFAULT 'active',
        timezone text,
        details jsonb NOT NULL DEFAULT '{{}}',
        metadata jsonb NOT NULL DEFAULT '{{}}',
        {_AUDIT},
        PRIMARY KEY (organization_id, id)
    )""",
    f"""
    CREATE TABLE agents (
        organization_id text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
        id text NOT NULL,
        name text,
        agent_type text,
        description text,
        system_prompt text,
        topic text,
        llm_config jsonb NOT NULL DEFAULT '{{}}',
        embedding_config jsonb NOT NULL DEFAULT '{{}}',
        tool_rules jsonb NOT NULL DEFAULT '[]',
        metadata jsonb NOT NULL DEFAULT '{{}}',
        {_AUDIT},
        PRIMARY KEY (organization_id, id)
    )""",
    f"""
    CREATE TABLE rooms (
        organization_id text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
        id text NOT NULL,
        name text,
        description text,
        metadata jsonb NOT NULL DEFAULT '{{}}',
        {_AUDIT},
        PRIMARY KEY (organization_id, id)
    )""",
    f"""
    CREATE TABLE memories (
        organization_id text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
        id uuid NOT NULL,
        kind text NOT NULL,
        content text NOT NULL,
        agent_id text,
        user_id text,
        room_id text,
        data jsonb NOT NULL DEFAULT '{{}}',
        importance real NOT NULL DEFAULT 0.5 CHECK (importance BETWEEN 0 AND 1),
        tags text[] NOT NULL DEFAULT '{{}}',
        metadata jsonb NOT NULL DEFAULT '{{}}',
        scope text,
        level text,
        content_hash text NOT NULL,
        is_unique boolean NOT NULL DEFAULT true,
        related_ids uuid[] NOT NULL DEFAULT '{{}}',
        access_count integer NOT NULL DEFAULT 0,
        last_accessed_at timestamptz,
        valid_from timestamptz,
        valid_to timestamptz,
        expires_at timestamptz,
        version integer NOT NULL DEFAULT 1,
        embedding_model text,
        embedding_dim smallint,
        embedding vector,
        tsv tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, content)) STORED,
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        FOREIGN KEY (organization_id, agent_id)
            REFERENCES agents (organization_id, id) ON DELETE CASCADE,
        FOREIGN KEY (organization_id, user_id)
            REFERENCES users (organization_id, id) ON DELETE CASCADE,
        FOREIGN KEY (organization_id, room_id)
            REFERENCES rooms (organization_id, id) ON DELETE CASCADE,
        CHECK ((embedding IS NULL) = (embedding_dim IS NULL)),
        CHECK (embedding IS NULL OR vector_dims(embedding) = embedding_dim)
    )""",
    # Scope columns are typed and indexed, with the id last so keyset pages come off the index.
    "CREATE INDEX memories_agent_idx ON memories (organization_id, agent_id, id)",
    "CREATE INDEX memories_user_idx ON memories (organization_id, user_id, id)",
    "CREATE INDEX memories_room_idx ON memories (organization_id, room_id, id)",
    "CREATE INDEX memories_kind_idx ON memories (organization_id, kind, id)",
    "CREATE INDEX memories_created_idx ON memories (organization_id, created_at)",
    "CREATE INDEX memories_tags_idx ON memories USING gin (tags)",
    "CREATE INDEX memories_metadata_idx ON memories USING gin (metadata jsonb_path_ops)",
    "CREATE INDEX memories_tsv_idx ON memories USING gin (tsv)",
    # Dedup: one live copy of a content per scope when is_unique.
    """
    CREATE UNIQUE INDEX memories_unique_content_idx
        ON memories (organization_id, kind, agent_id, user_id, room_id, content_hash)
        NULLS NOT DISTINCT
        WHERE is_unique AND deleted_at IS NULL""",
    """
    CREATE TABLE memory_history (
        organization_id text NOT NULL,
        id uuid NOT NULL,
        memory_id uuid NOT NULL,
        version integer NOT NULL,
        event text NOT NULL,
        snapshot jsonb NOT NULL,
        changed_at timestamptz NOT NULL DEFAULT now(),
        changed_by_id text,
        PRIMARY KEY (organization_id, id),
        FOREIGN KEY (organization_id, memory_id)
            REFERENCES memories (organization_id, id) ON DELETE CASCADE
    )""",
    "CREATE INDEX memory_history_memory_idx ON memory_history (organization_id, memory_id, version)",
    # One HNSW index per (dimensions, metric), created when a space is first used.
    """
    CREATE TABLE embedding_indexes (
        dimensions integer NOT NULL,
        metric text NOT NULL,
        index_name text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (dimensions, metric)
    )""",
]

POSTGRES_DOWN = [
    """
    DO $$ DECLARE r record; BEGIN
      FOR r IN SELECT index_name FROM embedding_indexes LOOP
        EXECUTE format('DROP INDEX IF EXISTS %I', r.index_name);
      END LOOP;
    END $$""",
    "DROP TABLE embedding_indexes",
    "DROP TABLE memory_history",
    "DROP TABLE memories",
    "DROP TABLE rooms",
    "DROP TABLE agents",
    "DROP TABLE users",
    "DROP TABLE organizations",
]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for statement in POSTGRES_UP:
            op.execute(statement)
    else:
        from engramdb.store.sqlite import schema

        schema.upgrade(op, revision)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for statement in POSTGRES_DOWN:
            op.execute(statement)
    else:
        from engramdb.store.sqlite import schema

        schema.downgrade(op, revision)
