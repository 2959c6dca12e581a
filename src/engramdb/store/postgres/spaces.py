"""Embedding spaces: the HNSW index of each (dimensions, metric), its name and its DDL."""

from __future__ import annotations

from psycopg import sql

__all__ = ["MAX_INDEXED_DIMENSIONS", "OPCLASS_SUFFIX", "index_ddl", "index_name"]

OPCLASS_SUFFIX = {"cosine": "_cosine_ops", "l2": "_l2_ops", "ip": "_ip_ops"}
#: pgvector's HNSW dimension limit per stored type; past it a space is searched exactly.
MAX_INDEXED_DIMENSIONS = {"vector": 2000, "halfvec": 4000}


def index_name(dimensions: int, metric: str, vector_type: str) -> str:
    suffix = "" if vector_type == "vector" else f"_{vector_type}"
    return f"memories_embedding_{dimensions}_{metric}{suffix}_idx"


def index_ddl(
    name: str, dimensions: int, metric: str, vector_type: str, *, m: int, ef_construction: int
) -> sql.Composed:
    """``CREATE INDEX`` of a space's HNSW index: a partial expression index per space, as one
    table holds vectors of any dimension."""
    return sql.SQL(
        "CREATE INDEX IF NOT EXISTS {name} ON memories USING hnsw "
        "((embedding::{vtype}({dim})) {ops}) WITH (m = {m}, ef_construction = {ef}) "
        "WHERE embedding_dim = {dim}"
    ).format(
        name=sql.Identifier(name),
        vtype=sql.SQL(vector_type),
        dim=sql.Literal(dimensions),
        ops=sql.SQL(vector_type + OPCLASS_SUFFIX[metric]),
        m=sql.Literal(m),
        ef=sql.Literal(ef_construction),
    )
