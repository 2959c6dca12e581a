"""SQLite DDL of revision 0003 (the rest of the data model: messages, blocks, goals, …).

Differences from PostgreSQL, each for a reason: SQLite cannot set only one column of a
composite foreign key to NULL (``ON DELETE SET NULL (memory_id)``), nor add a composite foreign
key with ALTER TABLE, so those three references (message → memory, execution → session,
room → agent) are kept by triggers instead; ``num_nonnulls`` becomes a sum of ``IS NULL``s and
NULLS NOT DISTINCT unique indexes map NULL to ``''`` (caller ids are never empty).
"""

from __future__ import annotations

from . import NOW_US as _NOW

_AUDIT = f"""
    created_at INTEGER NOT NULL DEFAULT {_NOW},
    updated_at INTEGER NOT NULL DEFAULT {_NOW},
    created_by_id TEXT,
    last_updated_by_id TEXT,
    deleted_at INTEGER"""
_LINK_AUDIT = f"""
    created_at INTEGER NOT NULL DEFAULT {_NOW},
    created_by_id TEXT"""
_ORG = "organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE"
_ID = "id BLOB NOT NULL CHECK (length(id) = 16)"


def _json(name: str, default: str = "{}") -> str:
    return f"{name} TEXT NOT NULL DEFAULT '{default}' CHECK (json_valid({name}))"


def _fk(column: str, table: str) -> str:
    return (
        f"FOREIGN KEY (organization_id, {column}) REFERENCES {table} (organization_id, id) "
        "ON DELETE CASCADE"
    )


TABLES = [
    "agent_memory_config", "participants", "messages", "blocks", "agent_blocks", "block_history",
    "tools", "agent_tools", "goals", "relationships", "memory_links", "decision_outcomes",
    "sessions", "workflows", "workflow_executions", "logs",
]  # fmt: skip

UP = [
    "CREATE UNIQUE INDEX users_email_idx ON users (organization_id, lower(email)) "
    "WHERE email IS NOT NULL AND deleted_at IS NULL",
    "CREATE UNIQUE INDEX users_username_idx ON users (organization_id, username) "
    "WHERE username IS NOT NULL AND deleted_at IS NULL",
    "ALTER TABLE rooms ADD COLUMN agent_id TEXT",
    """
    CREATE TRIGGER rooms_agent_cascade AFTER DELETE ON agents BEGIN
        DELETE FROM rooms WHERE organization_id = old.organization_id AND agent_id = old.id;
    END""",
    """
    CREATE TRIGGER rooms_agent_exists BEFORE INSERT ON rooms
    WHEN new.agent_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM agents WHERE organization_id = new.organization_id AND id = new.agent_id)
    BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed'); END""",
    f"""
    CREATE TABLE agent_memory_config (
        {_ORG},
        agent_id TEXT NOT NULL,
        embedding_model TEXT,
        vector_weight REAL CHECK (vector_weight >= 0),
        text_weight REAL CHECK (text_weight >= 0),
        recency_weight REAL CHECK (recency_weight BETWEEN 0 AND 1),
        importance_weight REAL CHECK (importance_weight BETWEEN 0 AND 1),
        half_life_days REAL CHECK (half_life_days > 0),
        fusion TEXT CHECK (fusion IN ('rrf', 'weighted')),
        top_k INTEGER CHECK (top_k > 0),
        threshold REAL CHECK (threshold BETWEEN 0 AND 1),
        dedup_threshold REAL CHECK (dedup_threshold BETWEEN 0 AND 1),
        retention_days INTEGER CHECK (retention_days > 0),
        block_char_limit INTEGER CHECK (block_char_limit > 0),
        max_blocks INTEGER CHECK (max_blocks > 0),
        {_json("metadata")},
        {_AUDIT},
        PRIMARY KEY (organization_id, agent_id),
        {_fk("agent_id", "agents")}
    ) STRICT""",
    f"""
    CREATE TABLE participants (
        {_ORG},
        {_ID},
        room_id TEXT NOT NULL,
        user_id TEXT,
        agent_id TEXT,
        state TEXT,
        joined_at INTEGER NOT NULL DEFAULT {_NOW},
        last_seen_at INTEGER,
        {_json("metadata")},
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("room_id", "rooms")},
        {_fk("user_id", "users")},
        {_fk("agent_id", "agents")},
        CHECK ((user_id IS NULL) + (agent_id IS NULL) = 1)
    ) STRICT""",
    "CREATE UNIQUE INDEX participants_member_idx ON participants "
    "(organization_id, room_id, ifnull(user_id, ''), ifnull(agent_id, '')) "
    "WHERE deleted_at IS NULL",
    "CREATE INDEX participants_user_idx ON participants (organization_id, user_id)",
    "CREATE INDEX participants_agent_idx ON participants (organization_id, agent_id)",
    f"""
    CREATE TABLE messages (
        {_ORG},
        {_ID},
        room_id TEXT,
        agent_id TEXT,
        user_id TEXT,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
        text TEXT,
        {_json("content", "[]")},
        {_json("tool_calls", "[]")},
        tool_call_id TEXT,
        {_json("tool_returns", "[]")},
        name TEXT,
        model TEXT,
        step_id TEXT,
        group_id TEXT,
        sender_id TEXT,
        otid TEXT,
        memory_id BLOB,
        {_json("metadata")},
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("room_id", "rooms")},
        {_fk("agent_id", "agents")},
        {_fk("user_id", "users")},
        CHECK (room_id IS NOT NULL OR agent_id IS NOT NULL)
    ) STRICT""",
    "CREATE INDEX messages_room_idx ON messages (organization_id, room_id, id)",
    "CREATE INDEX messages_agent_idx ON messages (organization_id, agent_id, id)",
    "CREATE INDEX messages_memory_idx ON messages (organization_id, memory_id)",
    """
    CREATE TRIGGER messages_memory_gone AFTER DELETE ON memories BEGIN
        UPDATE messages SET memory_id = NULL
        WHERE organization_id = old.organization_id AND memory_id = old.id;
    END""",
    f"""
    CREATE TABLE blocks (
        {_ORG},
        {_ID},
        label TEXT NOT NULL,
        value TEXT NOT NULL DEFAULT '',
        "limit" INTEGER NOT NULL DEFAULT 2000 CHECK ("limit" > 0),
        description TEXT,
        is_template INTEGER NOT NULL DEFAULT 0,
        template_name TEXT,
        read_only INTEGER NOT NULL DEFAULT 0,
        user_id TEXT,
        {_json("metadata")},
        version INTEGER NOT NULL DEFAULT 1,
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("user_id", "users")},
        CHECK (length(value) <= "limit")
    ) STRICT""",
    "CREATE INDEX blocks_label_idx ON blocks (organization_id, label)",
    f"""
    CREATE TABLE agent_blocks (
        {_ORG},
        agent_id TEXT NOT NULL,
        block_id BLOB NOT NULL,
        {_LINK_AUDIT},
        PRIMARY KEY (organization_id, agent_id, block_id),
        {_fk("agent_id", "agents")},
        {_fk("block_id", "blocks")}
    ) STRICT""",
    "CREATE INDEX agent_blocks_block_idx ON agent_blocks (organization_id, block_id)",
    f"""
    CREATE TABLE block_history (
        {_ORG},
        {_ID},
        resource_id BLOB NOT NULL,
        version INTEGER NOT NULL,
        event TEXT NOT NULL,
        {_json("snapshot")},
        changed_at INTEGER NOT NULL DEFAULT {_NOW},
        changed_by_id TEXT,
        PRIMARY KEY (organization_id, id),
        {_fk("resource_id", "blocks")}
    ) STRICT""",
    "CREATE INDEX block_history_block_idx ON block_history (organization_id, resource_id, version)",
    f"""
    CREATE TABLE tools (
        {_ORG},
        {_ID},
        name TEXT NOT NULL,
        description TEXT,
        {_json("json_schema")},
        source_type TEXT,
        source_code TEXT,
        {_json("tags", "[]")},
        {_json("metadata")},
        {_AUDIT},
        PRIMARY KEY (organization_id, id)
    ) STRICT""",
    "CREATE UNIQUE INDEX tools_name_idx ON tools (organization_id, name) WHERE deleted_at IS NULL",
    f"""
    CREATE TABLE agent_tools (
        {_ORG},
        agent_id TEXT NOT NULL,
        tool_id BLOB NOT NULL,
        {_LINK_AUDIT},
        PRIMARY KEY (organization_id, agent_id, tool_id),
        {_fk("agent_id", "agents")},
        {_fk("tool_id", "tools")}
    ) STRICT""",
    "CREATE INDEX agent_tools_tool_idx ON agent_tools (organization_id, tool_id)",
    f"""
    CREATE TABLE goals (
        {_ORG},
        {_ID},
        agent_id TEXT,
        user_id TEXT,
        room_id TEXT,
        name TEXT NOT NULL,
        description TEXT,
        status TEXT NOT NULL DEFAULT 'in_progress'
            CHECK (status IN ('in_progress', 'done', 'failed')),
        {_json("objectives", "[]")},
        {_json("metadata")},
        version INTEGER NOT NULL DEFAULT 1,
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("agent_id", "agents")},
        {_fk("user_id", "users")},
        {_fk("room_id", "rooms")}
    ) STRICT""",
    "CREATE INDEX goals_agent_idx ON goals (organization_id, agent_id, id)",
    "CREATE INDEX goals_room_idx ON goals (organization_id, room_id, id)",
    f"""
    CREATE TABLE relationships (
        {_ORG},
        {_ID},
        source_user_id TEXT,
        source_agent_id TEXT,
        target_user_id TEXT,
        target_agent_id TEXT,
        kind TEXT NOT NULL DEFAULT 'knows',
        status TEXT NOT NULL DEFAULT 'active',
        strength REAL CHECK (strength BETWEEN 0 AND 1),
        {_json("metadata")},
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("source_user_id", "users")},
        {_fk("source_agent_id", "agents")},
        {_fk("target_user_id", "users")},
        {_fk("target_agent_id", "agents")},
        CHECK ((source_user_id IS NULL) + (source_agent_id IS NULL) = 1),
        CHECK ((target_user_id IS NULL) + (target_agent_id IS NULL) = 1)
    ) STRICT""",
    "CREATE UNIQUE INDEX relationships_pair_idx ON relationships (organization_id, "
    "ifnull(source_user_id, ''), ifnull(source_agent_id, ''), ifnull(target_user_id, ''), "
    "ifnull(target_agent_id, ''), kind) WHERE deleted_at IS NULL",
    "CREATE INDEX relationships_su_idx ON relationships (organization_id, source_user_id)",
    "CREATE INDEX relationships_sa_idx ON relationships (organization_id, source_agent_id)",
    "CREATE INDEX relationships_tu_idx ON relationships (organization_id, target_user_id)",
    "CREATE INDEX relationships_ta_idx ON relationships (organization_id, target_agent_id)",
    f"""
    CREATE TABLE memory_links (
        {_ORG},
        source_id BLOB NOT NULL,
        target_id BLOB NOT NULL,
        kind TEXT NOT NULL DEFAULT 'related',
        {_json("metadata")},
        {_LINK_AUDIT},
        PRIMARY KEY (organization_id, source_id, target_id, kind),
        {_fk("source_id", "memories")},
        {_fk("target_id", "memories")},
        CHECK (source_id <> target_id)
    ) STRICT""",
    "CREATE INDEX memory_links_target_idx ON memory_links (organization_id, target_id)",
    f"""
    CREATE TABLE decision_outcomes (
        {_ORG},
        {_ID},
        memory_id BLOB,
        agent_id TEXT,
        user_id TEXT,
        room_id TEXT,
        task_context TEXT NOT NULL,
        {_json("alternatives", "[]")},
        chosen_option TEXT NOT NULL,
        reasoning TEXT NOT NULL DEFAULT '',
        outcome_status TEXT NOT NULL DEFAULT 'pending'
            CHECK (outcome_status IN ('pending', 'success', 'partial', 'failure')),
        {_json("outcome_details")},
        lessons_learned TEXT,
        user_feedback TEXT CHECK (user_feedback IN ('positive', 'negative', 'neutral')),
        resolved_at INTEGER,
        {_json("metadata")},
        version INTEGER NOT NULL DEFAULT 1,
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("memory_id", "memories")},
        {_fk("agent_id", "agents")},
        {_fk("user_id", "users")},
        {_fk("room_id", "rooms")}
    ) STRICT""",
    "CREATE INDEX decision_outcomes_agent_idx ON decision_outcomes "
    "(organization_id, agent_id, outcome_status)",
    "CREATE INDEX decision_outcomes_memory_idx ON decision_outcomes (organization_id, memory_id)",
    f"""
    CREATE TABLE sessions (
        {_ORG},
        {_ID},
        agent_id TEXT,
        user_id TEXT,
        room_id TEXT,
        name TEXT,
        command TEXT,
        status TEXT NOT NULL DEFAULT 'running'
            CHECK (status IN ('running', 'completed', 'failed', 'interrupted')),
        {_json("state")},
        started_at INTEGER NOT NULL DEFAULT {_NOW},
        ended_at INTEGER,
        {_json("metadata")},
        version INTEGER NOT NULL DEFAULT 1,
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("agent_id", "agents")},
        {_fk("user_id", "users")},
        {_fk("room_id", "rooms")}
    ) STRICT""",
    "CREATE INDEX sessions_agent_idx ON sessions (organization_id, agent_id, id)",
    f"""
    CREATE TABLE workflows (
        {_ORG},
        {_ID},
        agent_id TEXT,
        name TEXT NOT NULL,
        description TEXT,
        {_json("graph")},
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'archived')),
        {_json("metadata")},
        version INTEGER NOT NULL DEFAULT 1,
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("agent_id", "agents")}
    ) STRICT""",
    "CREATE UNIQUE INDEX workflows_name_idx ON workflows "
    "(organization_id, ifnull(agent_id, ''), name) WHERE deleted_at IS NULL",
    f"""
    CREATE TABLE workflow_executions (
        {_ORG},
        {_ID},
        workflow_id BLOB NOT NULL,
        session_id BLOB,
        agent_id TEXT,
        {_json("context")},
        current_node TEXT,
        status TEXT NOT NULL DEFAULT 'running'
            CHECK (status IN ('running', 'completed', 'failed', 'interrupted')),
        error TEXT,
        started_at INTEGER NOT NULL DEFAULT {_NOW},
        completed_at INTEGER,
        {_json("metadata")},
        version INTEGER NOT NULL DEFAULT 1,
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("workflow_id", "workflows")},
        {_fk("agent_id", "agents")}
    ) STRICT""",
    "CREATE INDEX workflow_executions_workflow_idx ON workflow_executions "
    "(organization_id, workflow_id, id)",
    """
    CREATE TRIGGER workflow_executions_session_gone AFTER DELETE ON sessions BEGIN
        UPDATE workflow_executions SET session_id = NULL
        WHERE organization_id = old.organization_id AND session_id = old.id;
    END""",
    """
    CREATE TRIGGER workflow_executions_session_exists BEFORE INSERT ON workflow_executions
    WHEN new.session_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM sessions WHERE organization_id = new.organization_id AND id = new.session_id)
    BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed'); END""",
    f"""
    CREATE TABLE logs (
        {_ORG},
        {_ID},
        agent_id TEXT,
        user_id TEXT,
        room_id TEXT,
        type TEXT NOT NULL,
        {_json("body")},
        {_AUDIT},
        PRIMARY KEY (organization_id, id),
        {_fk("agent_id", "agents")},
        {_fk("user_id", "users")},
        {_fk("room_id", "rooms")}
    ) STRICT""",
    "CREATE INDEX logs_room_idx ON logs (organization_id, room_id, id)",
    "CREATE INDEX logs_user_idx ON logs (organization_id, user_id, id)",
    "CREATE INDEX logs_agent_idx ON logs (organization_id, agent_id, id)",
]

DOWN = [
    "DROP TRIGGER workflow_executions_session_exists",
    "DROP TRIGGER workflow_executions_session_gone",
    "DROP TRIGGER messages_memory_gone",
    *[f"DROP TABLE {table}" for table in reversed(TABLES)],
    "DROP TRIGGER rooms_agent_exists",
    "DROP TRIGGER rooms_agent_cascade",
    "ALTER TABLE rooms DROP COLUMN agent_id",
    "DROP INDEX users_username_idx",
    "DROP INDEX users_email_idx",
]
