"""Compiles filter trees and memory queries into PostgreSQL WHERE clauses.

The clauses are plain text with ``%s`` placeholders, their values appended to ``params``: every
name in them is a known column (``filters.FIELDS``) or a trusted alias, quoted once, and every
value is a parameter. Composing them with ``psycopg.sql`` objects cost about a tenth of a small
search's client time.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from ...filters import FIELDS, And, Cond, Filter, Not, Or
from ..base import MemoryQuery

__all__ = [
    "ACCESS_EXPRESSIONS",
    "SCOPE_COLUMNS",
    "access_expression",
    "compile_filter",
    "compile_query",
    "compile_scope",
]

_CMP = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


#: Fields whose value is the row's column plus what ``memory_access`` counted since (migration
#: 0005): accesses are counted there, in narrow rows, instead of rewriting the memory's row.
ACCESS_EXPRESSIONS = {
    "access_count": (
        "({a}.access_count + coalesce((SELECT x.access_count FROM memory_access x "
        "WHERE x.organization_id = {a}.organization_id AND x.memory_id = {a}.id), 0))"
    ),
    "last_accessed_at": (
        "greatest({a}.last_accessed_at, (SELECT x.last_accessed_at FROM memory_access x "
        "WHERE x.organization_id = {a}.organization_id AND x.memory_id = {a}.id))"
    ),
}


@cache
def access_expression(alias: str, name: str) -> str:
    """The value of an access field of the memory ``alias`` (a trusted alias, not user input)."""
    return ACCESS_EXPRESSIONS[name].format(a=sql.Identifier(alias).as_string())


@cache
def _col(alias: str, name: str) -> str:
    """``alias.name`` quoted, or the access field's expression (names: known columns only)."""
    if name in ACCESS_EXPRESSIONS:
        return access_expression(alias, name)
    return f"{sql.Identifier(alias).as_string()}.{sql.Identifier(name).as_string()}"


def compile_filter(node: Filter, params: list[Any], alias: str = "m") -> str:
    """Append parameters to ``params`` and return the SQL condition for ``node``."""
    if isinstance(node, And):
        return "(" + " AND ".join(compile_filter(n, params, alias) for n in node.items) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(compile_filter(n, params, alias) for n in node.items) + ")"
    if isinstance(node, Not):
        # coalesce: NOT over an unknown (NULL) must still exclude the row, as on SQLite.
        return f"NOT coalesce({compile_filter(node.item, params, alias)}, false)"
    return _cond(node, params, alias)


def _cond(c: Cond, params: list[Any], alias: str) -> str:
    if c.field in ("metadata", "data"):
        return _json_cond(c, params, alias)
    kind = FIELDS[c.field]  # a known field (KeyError otherwise) before it is quoted and cached
    col = _col(alias, c.field)
    if kind == "tags":
        if c.op == "eq":
            params.append([c.value])
            return f"{col} @> %s::text[]"
        params.append(c.value)
        op = {"any": "&&", "all": "@>", "none": "&&"}[c.op]
        expr = f"{col} {op} %s::text[]"
        return f"NOT ({expr})" if c.op == "none" else expr
    if c.op == "exists":
        return f"{col} IS NOT NULL" if c.value else f"{col} IS NULL"
    if c.op == "eq" and c.value is None:
        return f"{col} IS NULL"
    if c.op == "ne":
        params.append(c.value)
        return f"{col} IS DISTINCT FROM %s"
    if c.op in ("in", "nin"):
        params.append(list(c.value))
        expr = f"{col} = ANY(%s)"
        return expr if c.op == "in" else f"NOT coalesce({expr}, false)"
    params.append(c.value)
    return f"{col} {_CMP[c.op]} %s"


def _nest(path: tuple[str, ...], value: Any) -> Any:
    for key in reversed(path):
        value = {key: value}
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null"


def _json_cond(c: Cond, params: list[Any], alias: str) -> str:
    col = _col(alias, c.field)
    path = list(c.path)
    if c.op == "contains":
        if not path:
            params.append(Jsonb(c.value))
            return f"{col} @> %s"
        params.extend([path, Jsonb(c.value)])
        return f"coalesce({col} #> %s @> %s, false)"
    if c.op == "exists":
        params.append(path)
        return f"{col} #> %s IS {'NOT ' if c.value else ''}NULL"
    if c.op == "eq":
        # Containment uses the GIN index (jsonb_path_ops).
        params.append(Jsonb(_nest(c.path, c.value)))
        return f"{col} @> %s"
    if c.op == "ne":
        params.append(Jsonb(_nest(c.path, c.value)))
        return f"NOT ({col} @> %s)"
    if c.op in ("in", "nin"):
        params.extend([path, [json.dumps(v) for v in c.value]])
        expr = f"coalesce({col} #> %s = ANY(%s::jsonb[]), false)"
        return expr if c.op == "in" else f"NOT {expr}"
    # Ordering comparisons only between values of the same JSON type.
    params.extend([path, _json_type(c.value), path, Jsonb(c.value)])
    return f"(jsonb_typeof({col} #> %s) = %s AND {col} #> %s {_CMP[c.op]} %s)"


def compile_query(
    org: str, query: MemoryQuery, params: list[Any], now: datetime, alias: str = "m"
) -> str:
    """The whole WHERE condition of a listing or search: tenant, liveness, validity, filter."""
    parts = [f"{_col(alias, 'organization_id')} = %s"]
    params.append(org)
    if not query.include_deleted:
        parts.append(f"{_col(alias, 'deleted_at')} IS NULL")
    if not query.include_expired:
        params.append(now)
        expires = _col(alias, "expires_at")
        parts.append(f"({expires} IS NULL OR {expires} > %s)")
    moment = query.as_of or now
    params.extend([moment, moment])
    start, end = _col(alias, "valid_from"), _col(alias, "valid_to")
    parts.append(f"({start} IS NULL OR {start} <= %s) AND ({end} IS NULL OR {end} > %s)")
    if query.filter is not None:
        parts.append(compile_filter(query.filter, params, alias))
    return " AND ".join(parts)


#: Columns with a B-tree led by organization_id (migration 0001), and the id of the primary key.
SCOPE_COLUMNS = ("agent_id", "user_id", "room_id", "kind")


def compile_scope(org: str, query: MemoryQuery, params: list[Any]) -> str | None:
    """The query's condition when it is only scopes: the organization and equalities (or
    ``in``) on the indexed scope columns, AND-ed; ``None`` when anything else filters.

    Counting such a condition reads the B-tree alone (an index-only scan), so it is the cheap way
    to size a filter; other conditions (tags, metadata, times, ``as_of``) need the rows.
    """
    if query.as_of is not None:
        return None
    items: tuple[Filter, ...] = ()
    if isinstance(query.filter, And):
        items = query.filter.items
    elif query.filter is not None:
        items = (query.filter,)
    parts = ["m.organization_id = %s"]
    params.append(org)
    for item in items:
        if not (
            isinstance(item, Cond)
            and item.field in SCOPE_COLUMNS
            and item.op in ("eq", "in")
            and item.value is not None
        ):
            return None
        parts.append(_cond(item, params, "m"))
    return " AND ".join(parts)
