"""The seeds' data model: agent memory config, participants, messages, blocks, tools, goals, relationships, decisions, sessions, workflows, logs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Conventions (DESIGN.md): ``organization_id`` is part of every primary key, unique constraint and
foreign key; ids of rows engramdb creates are time-ordered UUIDs; audit columns everywhere; soft
delete through ``deleted_at`` (junction tables are deleted for real: a link either exists or not).

Messages keep their structure (role, content parts, tool calls, …) in ``messages``; their text is
also stored as a memory of kind ``message`` (``messages.memory_id``). That is deliberate: message
recall then uses the very same hybrid search, per-dimension HNSW indexes, filters, time travel and
SQLite FTS as every other memory, instead of a second copy of all that for one table.
"""

from alembic import op

from engramdb.migrations.rls import disable_tenant_rls, enable_tenant_rls

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_AUDIT = """
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    created_by_id text,
    last_updated_by_id text,
    deleted_at timestamptz
"""
_LINK_AUDIT = """
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by_id text
"""


def _fk(column: str, table: str, action: str = "CASCADE") -> str:
    return (
        f"FOREIGN KEY (organization_id, {column}) REFERENCES {table} (organization_id, id) "
        f"ON DELETE {action}"
    )


_ORG = "organization_id text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE"

#: Every table this revision creates, in creation order (dropped in reverse).
TABLES = [
    "agent_memory_config", "participants", "messages", "blocks", "agent_blocks", "block_history",
    "tools", "agent_tools", "goals", "relationships", "memory_links", "decision_outcomes",
    "sessions", "workflows", "workflow_executions", "logs",
]  # fmt: skip

POSTGRES_UP = [
    # The seeds' accounts have unique usernames and emails; here per organization, live rows only.
    "CREATE UNIQUE INDEX users_email_idx ON users (organization_id, lower(email)) "
    "WHERE email IS NOT NULL AND deleted_at IS NULL",
    "CREATE UNIQUE INDEX users_username_idx ON users (organization_id, username) "
    "WHERE username IS NOT NULL AND deleted_at IS NULL",
    "ALTER TABLE rooms ADD COLUMN agent_id text",
    f"ALTER TABLE rooms ADD {_fk('agent_id', 'agents')}",
    f"""
    CREATE TABLE agent_memory_config (
        {_ORG},
        agent_id text NOT NULL,
        embedding_model text,
        vector_weight real CHECK (vector_weight >= 0),
        text_weight real CHECK (text_weight >= 0),
        recency_weight real CHECK (recency_weight BETWEEN 0 AND 1),
        importance_weight real CHECK (importance_weight BETWEEN 0 AND 1),
        half_life_days real CHECK (half_life_days > 0),
        fusion text CHECK (fusion IN ('rrf', 'weighted')),
        top_k integer CHECK (top_k > 0),
        threshold real CHECK (threshold BETWEEN 0 AND 1),
        dedup_threshold real CHECK (dedup_threshold BETWEEN 0 AND 1),
        retention_days integer CHECK (retention_days > 0),
        block_char_limit integer CHECK (block_char_limit > 0),
        max_blocks integer CHECK (max_blocks > 0),
        metadata jsonb NOT NULL DEFAULT '{{}}',
        {_AUDIT},
        PRIMARY KEY (organization_id, agent_id),
        {_fk("agent_id", "agents")}
    )""",
    f"""
    CREATE TABLE participants (
        {_ORG},
        id uuid NOT NULL,
        room_id text NOT NULL,
        user_id text,
        agent_id text,
        state text,
        joined_at timestamptz NOT NULL DEFAULT now(),
        last_seen_at timestamptz,
        metadata jsonb NOT NULL DEFAULT '{{}}',
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("room_id", "rooms")},
        {_fk("user_id", "users")},
        {_fk("agent_id", "agents")},
        CHECK (num_nonnulls(user_id, agent_id) = 1)
    )""",
    "CREATE UNIQUE INDEX participants_member_idx ON participants "
    "(organization_id, room_id, user_id, agent_id) NULLS NOT DISTINCT WHERE deleted_at IS NULL",
    "CREATE INDEX participants_user_idx ON participants (organization_id, user_id)",
    "CREATE INDEX participants_agent_idx ON participants (organization_id, agent_id)",
    f"""
    CREATE TABLE messages (
        {_ORG},
        id uuid NOT NULL,
        room_id text,
        agent_id text,
        user_id text,
        role text NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
        text text,
        content jsonb NOT NULL DEFAULT '[]',
        tool_calls jsonb NOT NULL DEFAULT '[]',
        tool_call_id text,
        tool_returns jsonb NOT NULL DEFAULT '[]',
        name text,
        model text,
        step_id text,
        group_id text,
        sender_id text,
        otid text,
        memory_id uuid,
        metadata jsonb NOT NULL DEFAULT '{{}}',
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("room_id", "rooms")},
        {_fk("agent_id", "agents")},
        {_fk("user_id", "users")},
        FOREIGN KEY (organization_id, memory_id) REFERENCES memories (organization_id, id)
            ON DELETE SET NULL (memory_id),
        CHECK (room_id IS NOT NULL OR agent_id IS NOT NULL)
    )""",
    "CREATE INDEX messages_room_idx ON messages (organization_id, room_id, id)",
    "CREATE INDEX messages_agent_idx ON messages (organization_id, agent_id, id)",
    "CREATE INDEX messages_memory_idx ON messages (organization_id, memory_id)",
    f"""
    CREATE TABLE blocks (
        {_ORG},
        id uuid NOT NULL,
        label text NOT NULL,
        value text NOT NULL DEFAULT '',
        "limit" integer NOT NULL DEFAULT 2000 CHECK ("limit" > 0),
        description text,
        is_template boolean NOT NULL DEFAULT false,
        template_name text,
        read_only boolean NOT NULL DEFAULT false,
        user_id text,
        metadata jsonb NOT NULL DEFAULT '{{}}',
        version integer NOT NULL DEFAULT 1,
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("user_id", "users")},
        -- The service refuses oversized writes with a clear error; this holds under races too.
        CHECK (char_length(value) <= "limit")
    )""",
    "CREATE INDEX blocks_label_idx ON blocks (organization_id, label)",
    f"""
    CREATE TABLE agent_blocks (
        {_ORG},
        agent_id text NOT NULL,
        block_id uuid NOT NULL,
        {_LINK_AUDIT},
        PRIMARY KEY (organization_id, agent_id, block_id),
        {_fk("agent_id", "agents")},
        {_fk("block_id", "blocks")}
    )""",
    "CREATE INDEX agent_blocks_block_idx ON agent_blocks (organization_id, block_id)",
    f"""
    CREATE TABLE block_history (
        {_ORG},
        id uuid NOT NULL,
        resource_id uuid NOT NULL,
        version integer NOT NULL,
        event text NOT NULL,
        snapshot jsonb NOT NULL,
        changed_at timestamptz NOT NULL DEFAULT now(),
        changed_by_id text,
        PRIMARY KEY (organization_id, id),
        {_fk("resource_id", "blocks")}
    )""",
    "CREATE INDEX block_history_block_idx ON block_history (organization_id, resource_id, version)",
    f"""
    CREATE TABLE tools (
        {_ORG},
        id uuid NOT NULL,
        name text NOT NULL,
        description text,
        json_schema jsonb NOT NULL DEFAULT '{{}}',
        source_type text,
        source_code text,
        tags jsonb NOT NULL DEFAULT '[]',
        metadata jsonb NOT NULL DEFAULT '{{}}',
        {_AUDIT},
        PRIMARY KEY (organization_id, id)
    )""",
    "CREATE UNIQUE INDEX tools_name_idx ON tools (organization_id, name) WHERE deleted_at IS NULL",
    f"""
    CREATE TABLE agent_tools (
        {_ORG},
        agent_id text NOT NULL,
        tool_id uuid NOT NULL,
        {_LINK_AUDIT},
        PRIMARY KEY (organization_id, agent_id, tool_id),
        {_fk("agent_id", "agents")},
        {_fk("tool_id", "tools")}
    )""",
    "CREATE INDEX agent_tools_tool_idx ON agent_tools (organization_id, tool_id)",
    f"""
    CREATE TABLE goals (
        {_ORG},
        id uuid NOT NULL,
        agent_id text,
        user_id text,
        room_id text,
        name text NOT NULL,
        description text,
        status text NOT NULL DEFAULT 'in_progress'
            CHECK (status IN ('in_progress', 'done', 'failed')),
        objectives jsonb NOT NULL DEFAULT '[]',
        metadata jsonb NOT NULL DEFAULT '{{}}',
        version integer NOT NULL DEFAULT 1,
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("agent_id", "agents")},
        {_fk("user_id", "users")},
        {_fk("room_id", "rooms")}
    )""",
    "CREATE INDEX goals_agent_idx ON goals (organization_id, agent_id, id)",
    "CREATE INDEX goals_room_idx ON goals (organization_id, room_id, id)",
    # Either end of a relationship is a user or an agent: one typed column per possibility keeps
    # real foreign keys (and their cascades) instead of a polymorphic id.
    f"""
    CREATE TABLE relationships (
        {_ORG},
        id uuid NOT NULL,
        source_user_id text,
        source_agent_id text,
        target_user_id text,
        target_agent_id text,
        kind text NOT NULL DEFAULT 'knows',
        status text NOT NULL DEFAULT 'active',
        strength real CHECK (strength BETWEEN 0 AND 1),
        metadata jsonb NOT NULL DEFAULT '{{}}',
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("source_user_id", "users")},
        {_fk("source_agent_id", "agents")},
        {_fk("target_user_id", "users")},
        {_fk("target_agent_id", "agents")},
        CHECK (num_nonnulls(source_user_id, source_agent_id) = 1),
        CHECK (num_nonnulls(target_user_id, target_agent_id) = 1)
    )""",
    "CREATE UNIQUE INDEX relationships_pair_idx ON relationships (organization_id, "
    "source_user_id, source_agent_id, target_user_id, target_agent_id, kind) NULLS NOT DISTINCT "
    "WHERE deleted_at IS NULL",
    "CREATE INDEX relationships_su_idx ON relationships (organization_id, source_user_id)",
    "CREATE INDEX relationships_sa_idx ON relationships (organization_id, source_agent_id)",
    "CREATE INDEX relationships_tu_idx ON relationships (organization_id, target_user_id)",
    "CREATE INDEX relationships_ta_idx ON relationships (organization_id, target_agent_id)",
    f"""
    CREATE TABLE memory_links (
        {_ORG},
        source_id uuid NOT NULL,
        target_id uuid NOT NULL,
        kind text NOT NULL DEFAULT 'related',
        metadata jsonb NOT NULL DEFAULT '{{}}',
        {_LINK_AUDIT},
        PRIMARY KEY (organization_id, source_id, target_id, kind),
        {_fk("source_id", "memories")},
        {_fk("target_id", "memories")},
        CHECK (source_id <> target_id)
    )""",
    "CREATE INDEX memory_links_target_idx ON memory_links (organization_id, target_id)",
    f"""
    CREATE TABLE decision_outcomes (
        {_ORG},
        id uuid NOT NULL,
        memory_id uuid,
        agent_id text,
        user_id text,
        room_id text,
        task_context text NOT NULL,
        alternatives jsonb NOT NULL DEFAULT '[]',
        chosen_option text NOT NULL,
        reasoning text NOT NULL DEFAULT '',
        outcome_status text NOT NULL DEFAULT 'pending'
            CHECK (outcome_status IN ('pending', 'success', 'partial', 'failure')),
        outcome_details jsonb NOT NULL DEFAULT '{{}}',
        lessons_learned text,
        user_feedback text CHECK (user_feedback IN ('positive', 'negative', 'neutral')),
        resolved_at timestamptz,
        metadata jsonb NOT NULL DEFAULT '{{}}',
        version integer NOT NULL DEFAULT 1,
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("memory_id", "memories")},
        {_fk("agent_id", "agents")},
        {_fk("user_id", "users")},
        {_fk("room_id", "rooms")}
    )""",
    "CREATE INDEX decision_outcomes_agent_idx ON decision_outcomes "
    "(organization_id, agent_id, outcome_status)",
    "CREATE INDEX decision_outcomes_memory_idx ON decision_outcomes (organization_id, memory_id)",
    f"""
    CREATE TABLE sessions (
        {_ORG},
        id uuid NOT NULL,
        agent_id text,
        user_id text,
        room_id text,
        name text,
        command text,
        status text NOT NULL DEFAULT 'running'
            CHECK (status IN ('running', 'completed', 'failed', 'interrupted')),
        state jsonb NOT NULL DEFAULT '{{}}',
        started_at timestamptz NOT NULL DEFAULT now(),
        ended_at timestamptz,
        metadata jsonb NOT NULL DEFAULT '{{}}',
        version integer NOT NULL DEFAULT 1,
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("agent_id", "agents")},
        {_fk("user_id", "users")},
        {_fk("room_id", "rooms")}
    )""",
    "CREATE INDEX sessions_agent_idx ON sessions (organization_id, agent_id, id)",
    f"""
    CREATE TABLE workflows (
        {_ORG},
        id uuid NOT NULL,
        agent_id text,
        name text NOT NULL,
        description text,
        graph jsonb NOT NULL DEFAULT '{{}}',
        status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'archived')),
        metadata jsonb NOT NULL DEFAULT '{{}}',
        version integer NOT NULL DEFAULT 1,
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("agent_id", "agents")}
    )""",
    "CREATE UNIQUE INDEX workflows_name_idx ON workflows (organization_id, agent_id, name) "
    "NULLS NOT DISTINCT WHERE deleted_at IS NULL",
    f"""
    CREATE TABLE workflow_executions (
        {_ORG},
        id uuid NOT NULL,
        workflow_id uuid NOT NULL,
        session_id uuid,
        agent_id text,
        context jsonb NOT NULL DEFAULT '{{}}',
        current_node text,
        status text NOT NULL DEFAULT 'running'
            CHECK (status IN ('running', 'completed', 'failed', 'interrupted')),
        error text,
        started_at timestamptz NOT NULL DEFAULT now(),
        completed_at timestamptz,
        metadata jsonb NOT NULL DEFAULT '{{}}',
        version integer NOT NULL DEFAULT 1,
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("workflow_id", "workflows")},
        FOREIGN KEY (organization_id, session_id) REFERENCES sessions (organization_id, id)
            ON DELETE SET NULL (session_id),
        {_fk("agent_id", "agents")}
    )""",
    "CREATE INDEX workflow_executions_workflow_idx ON workflow_executions "
    "(organization_id, workflow_id, id)",
    "CREATE INDEX workflow_executions_status_idx ON workflow_executions "
    "(organization_id, status) WHERE status IN ('running', 'interrupted')",
    f"""
    CREATE TABLE logs (
        {_ORG},
        id uuid NOT NULL,
        agent_id text,
        user_id text,
        room_id text,
        type text NOT NULL,
        body jsonb NOT NULL DEFAULT '{{}}',
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("agent_id", "agents")},
        {_fk("user_id", "users")},
        {_fk("room_id", "rooms")}
    )""",
    "CREATE INDEX logs_room_idx ON logs (organization_id, room_id, id)",
    "CREATE INDEX logs_user_idx ON logs (organization_id, user_id, id)",
    "CREATE INDEX logs_agent_idx ON logs (organization_id, agent_id, id)",
    *[stmt for table in TABLES for stmt in enable_tenant_rls(table)],
]

POSTGRES_DOWN = [
    *[stmt for table in reversed(TABLES) for stmt in disable_tenant_rls(table)],
    *[f"DROP TABLE {table}" for table in reversed(TABLES)],
    "ALTER TABLE rooms DROP COLUMN agent_id",
    "DROP INDEX users_username_idx",
    "DROP INDEX users_email_idx",
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
