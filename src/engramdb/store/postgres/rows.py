"""A memory's row as the store reads and writes it: the columns, their types, and decoding."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from psycopg import sql

from ...models import Memory
from ..base import RawHit
from .compile import ACCESS_EXPRESSIONS, access_expression

__all__ = [
    "INSERT_FIELDS",
    "INSERT_TYPES",
    "MEMORY_FIELDS",
    "cols",
    "raw_hit",
    "render",
    "to_memory",
]

MEMORY_FIELDS = [
    "id", "organization_id", "kind", "content", "agent_id", "user_id", "room_id", "data",
    "importance", "tags", "metadata", "scope", "level", "content_hash", "is_unique",
    "related_ids", "access_count", "last_accessed_at", "valid_from", "valid_to", "expires_at",
    "version", "embedding_model", "created_at", "updated_at", "created_by_id",
    "last_updated_by_id", "deleted_at",
]  # fmt: skip
#: Written columns and their types: binary COPY needs the types, and staging mirrors them.
INSERT_TYPES = {
    "organization_id": "text", "id": "uuid", "kind": "text", "content": "text",
    "agent_id": "text", "user_id": "text", "room_id": "text", "data": "jsonb",
    "importance": "real", "tags": "text[]", "metadata": "jsonb", "scope": "text",
    "level": "text", "content_hash": "text", "is_unique": "boolean", "related_ids": "uuid[]",
    "valid_from": "timestamptz", "valid_to": "timestamptz", "expires_at": "timestamptz",
    "embedding_model": "text", "embedding_dim": "smallint", "embedding": "vector",
    "created_at": "timestamptz", "updated_at": "timestamptz", "created_by_id": "text",
    "last_updated_by_id": "text",
}  # fmt: skip
INSERT_FIELDS = list(INSERT_TYPES)


def render(composed: sql.Composable) -> sql.SQL:
    """A constant fragment rendered once: composing it again for every query costs more than
    the query's own round trip on the hot paths."""
    return sql.SQL(composed.as_string())


def _compose_cols(alias: str, with_embedding: bool) -> sql.SQL:
    """The memory's fields as read back: its columns, the access fields with what
    ``memory_access`` counted (evaluated for the rows returned only, after any sort and limit,
    as PostgreSQL postpones costly output expressions past them)."""
    names = [*MEMORY_FIELDS, "embedding"] if with_embedding else MEMORY_FIELDS
    return render(
        sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(sql.SQL(access_expression(alias, n)), sql.Identifier(n))
            if n in ACCESS_EXPRESSIONS
            else sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(n))
            for n in names
        )
    )


_COLS = {(a, e): _compose_cols(a, e) for a in ("m",) for e in (False, True)}


def cols(alias: str, with_embedding: bool = False) -> sql.SQL:
    return _COLS.get((alias, with_embedding)) or _compose_cols(alias, with_embedding)


#: Memory.model_validate without its Python wrapper (2 µs a row on a search's hot path).
_memory_of = Memory.__pydantic_validator__.validate_python


def raw_hit(row: Sequence[Any]) -> RawHit:
    """A search row (MEMORY_FIELDS, then _dist, _rank, _exact) as a hit."""
    return RawHit(
        memory=_memory_of(dict(zip(MEMORY_FIELDS, row, strict=False))),
        distance=None if row[-3] is None else float(row[-3]),
        text_rank=None if row[-2] is None else float(row[-2]),
    )


def to_memory(row: Mapping[str, Any]) -> Memory:
    values = {k: row[k] for k in MEMORY_FIELDS}
    emb = row.get("embedding")
    if emb is not None:
        # pgvector's loader gives numpy arrays or Vector objects depending on the column type.
        arr = emb.to_numpy() if hasattr(emb, "to_numpy") else np.asarray(emb)
        values["embedding"] = [float(x) for x in arr]
    return Memory.model_validate(values)
