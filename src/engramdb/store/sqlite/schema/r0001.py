"""SQLite DDL of revision 0001: organizations, users, agents, rooms, memories, history, search.

Differences from PostgreSQL, each for a reason: ``memories`` has an integer ``seq`` (FTS5 and
the vector cache need an integer row id that is never reused) next to the UUID ``id``; the
dedup index maps NULL scopes to ``''`` because SQLite unique indexes have no NULLS NOT DISTINCT
(caller ids are never empty); full text lives in an FTS5 table kept in step by triggers;
``memory_vector_changes`` logs vector updates and deletes for the per-process vector caches.
"""

from __future__ import annotations

from ..text import TOKENIZER
from . import NOW_US as _NOW

_AUDIT = f"""
    created_at INTEGER NOT NULL DEFAULT {_NOW},
    updated_at INTEGER NOT NULL DEFAULT {_NOW},
    created_by_id TEXT,
    last_updated_by_id TEXT,
    deleted_at INTEGER"""


def _scope_table(name: str, columns: str) -> str:
    return f"""
    CREATE TABLE {name} (
        organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
        id TEXT NOT NULL,
        {columns}
        metadata TEXT NOT NULL DEFAULT '{{}}' CHECK (json_valid(metadata)),
        {_AUDIT},
        PRIMARY KEY (organization_id, id)
    ) STRICT"""


UP = [
    f"""
    CREATE TABLE organizations (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{{}}' CHECK (json_valid(metadata)),
        {_AUDIT}
    ) STRICT""",
    "INSERT INTO organizations (id, name) VALUES ('default', 'Default organization')",
    _scope_table(
        "users",
        """name TEXT,
        username TEXT,
        email TEXT,
        avatar_url TEXT,
        status TEXT NOT NULL DEFAULT 'active',
        timezone TEXT,
        details TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(details)),""",
    ),
    _scope_table(
        "agents",
        """name TEXT,
        agent_type TEXT,
        description TEXT,
        system_prompt TEXT,
        topic TEXT,
        llm_config TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(llm_config)),
        embedding_config TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(embedding_config)),
        tool_rules TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tool_rules)),""",
    ),
    _scope_table("rooms", "name TEXT,\n        description TEXT,"),
    f"""
    CREATE TABLE memories (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
        id BLOB NOT NULL CHECK (length(id) = 16),
        kind TEXT NOT NULL,
        content TEXT NOT NULL,
        agent_id TEXT,
        user_id TEXT,
        room_id TEXT,
        data TEXT NOT NULL DEFAULT '{{}}' CHECK (json_valid(data)),
        importance REAL NOT NULL DEFAULT 0.5 CHECK (importance BETWEEN 0 AND 1),
        tags TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags)),
        metadata TEXT NOT NULL DEFAULT '{{}}' CHECK (json_valid(metadata)),
        scope TEXT,
        level TEXT,
        content_hash TEXT NOT NULL,
        is_unique INTEGER NOT NULL DEFAULT 1,
        related_ids TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(related_ids)),
        access_count INTEGER NOT NULL DEFAULT 0,
        last_accessed_at INTEGER,
        valid_from INTEGER,
        valid_to INTEGER,
        expires_at INTEGER,
        version INTEGER NOT NULL DEFAULT 1,
        embedding_model TEXT,
        embedding_dim INTEGER,
        embedding BLOB,
        {_AUDIT},
        UNIQUE (organization_id, id),
        FOREIGN KEY (organization_id, agent_id)
            REFERENCES agents (organization_id, id) ON DELETE CASCADE,
        FOREIGN KEY (organization_id, user_id)
            REFERENCES users (organization_id, id) ON DELETE CASCADE,
        FOREIGN KEY (organization_id, room_id)
            REFERENCES rooms (organization_id, id) ON DELETE CASCADE,
        CHECK ((embedding IS NULL) = (embedding_dim IS NULL)),
        CHECK (embedding IS NULL OR length(embedding) = 4 * embedding_dim)
    ) STRICT""",
    # Scope columns indexed with the id last, so keyset pages come off the index.
    "CREATE INDEX memories_agent_idx ON memories (organization_id, agent_id, id)",
    "CREATE INDEX memories_user_idx ON memories (organization_id, user_id, id)",
    "CREATE INDEX memories_room_idx ON memories (organization_id, room_id, id)",
    "CREATE INDEX memories_kind_idx ON memories (organization_id, kind, id)",
    "CREATE INDEX memories_created_idx ON memories (organization_id, created_at)",
    """
    CREATE UNIQUE INDEX memories_unique_content_idx ON memories (
        organization_id, kind, ifnull(agent_id, ''), ifnull(user_id, ''), ifnull(room_id, ''),
        content_hash
    ) WHERE is_unique AND deleted_at IS NULL""",
    """
    CREATE TABLE memory_history (
        organization_id TEXT NOT NULL,
        id BLOB NOT NULL,
        memory_id BLOB NOT NULL,
        version INTEGER NOT NULL,
        event TEXT NOT NULL,
        snapshot TEXT NOT NULL CHECK (json_valid(snapshot)),
        changed_at INTEGER NOT NULL,
        changed_by_id TEXT,
        PRIMARY KEY (organization_id, id),
        FOREIGN KEY (organization_id, memory_id)
            REFERENCES memories (organization_id, id) ON DELETE CASCADE
    ) STRICT""",
    "CREATE INDEX memory_history_memory_idx ON memory_history (organization_id, memory_id, version)",
    # Full text: an external-content FTS5 index over memories.content, keyed by seq.
    f"""
    CREATE VIRTUAL TABLE memories_fts USING fts5(
        content, content='memories', content_rowid='seq', tokenize='{TOKENIZER}'
    )""",
    """
    CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
        INSERT INTO memories_fts (rowid, content) VALUES (new.seq, new.content);
    END""",
    """
    CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
        INSERT INTO memories_fts (memories_fts, rowid, content)
            VALUES ('delete', old.seq, old.content);
    END""",
    """
    CREATE TRIGGER memories_fts_update AFTER UPDATE OF content ON memories BEGIN
        INSERT INTO memories_fts (memories_fts, rowid, content)
            VALUES ('delete', old.seq, old.content);
        INSERT INTO memories_fts (rowid, content) VALUES (new.seq, new.content);
    END""",
    # Vector changes other than inserts, for the per-process vector caches (cascades included).
    """
    CREATE TABLE memory_vector_changes (
        version INTEGER PRIMARY KEY AUTOINCREMENT,
        seq INTEGER NOT NULL
    ) STRICT""",
    """
    CREATE TRIGGER memories_vectors_update
    AFTER UPDATE OF embedding, embedding_model, embedding_dim ON memories BEGIN
        INSERT INTO memory_vector_changes (seq) VALUES (new.seq);
    END""",
    """
    CREATE TRIGGER memories_vectors_delete AFTER DELETE ON memories
    WHEN old.embedding IS NOT NULL BEGIN
        INSERT INTO memory_vector_changes (seq) VALUES (old.seq);
    END""",
]

DOWN = [
    "DROP TABLE memory_vector_changes",
    "DROP TABLE memories_fts",
    "DROP TABLE memory_history",
    "DROP TABLE memories",
    "DROP TABLE rooms",
    "DROP TABLE agents",
    "DROP TABLE users",
    "DROP TABLE organizations",
]
