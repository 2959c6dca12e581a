"""Compiles filter trees and memory queries into PostgreSQL WHERE clauses (psycopg.sql)."""

from __future__ import annotations

import json
from datetime import datetime
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


def access_expression(alias: str, name: str) -> str:
    """The value of an access field of the memory ``alias`` (a trusted alias, not user input)."""
    return ACCESS_EXPRESSIONS[name].format(a=sql.Identifier(alias).as_string())


def _col(alias: str, name: str) -> sql.Composable:
    if name in ACCESS_EXPRESSIONS:
        return sql.SQL(access_expression(alias, name))
    return sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(name))


def compile_filter(node: Filter, params: list[Any], alias: str = "m") -> sql.Composable:
    """Append parameters to ``params`` and return the SQL condition for ``node``."""
    if isinstance(node, And):
        parts = [compile_filter(n, params, alias) for n in node.items]
        return sql.SQL("({})").format(sql.SQL(" AND ").join(parts))
    if isinstance(node, Or):
        parts = [compile_filter(n, params, alias) for n in node.items]
        return sql.SQL("({})").format(sql.SQL(" OR ").join(parts))
    if isinstance(node, Not):
        # coalesce: NOT over an unknown (NULL) must still exclude the row, as on SQLite.
        return sql.SQL("NOT coalesce({}, false)").format(compile_filter(node.item, params, alias))
    return _cond(node, params, alias)


def _cond(c: Cond, params: list[Any], alias: str) -> sql.Composable:
    if c.field in ("metadata", "data"):
        return _json_cond(c, params, alias)
    col = _col(alias, c.field)
    kind = FIELDS[c.field]
    if kind == "tags":
        if c.op == "eq":
            params.append([c.value])
            return sql.SQL("{} @> %s::text[]").format(col)
        params.append(c.value)
        op = {"any": "&&", "all": "@>", "none": "&&"}[c.op]
        expr = sql.SQL("{} {} %s::text[]").format(col, sql.SQL(op))
        return sql.SQL("NOT ({})").format(expr) if c.op == "none" else expr
    if c.op == "exists":
        return sql.SQL("{} IS NOT NULL" if c.value else "{} IS NULL").format(col)
    if c.op == "eq" and c.value is None:
        return sql.SQL("{} IS NULL").format(col)
    if c.op == "ne":
        params.append(c.value)
        return sql.SQL("{} IS DISTINCT FROM %s").format(col)
    if c.op in ("in", "nin"):
        params.append(list(c.value))
        expr = sql.SQL("{} = ANY(%s)").format(col)
        return expr if c.op == "in" else sql.SQL("NOT coalesce({}, false)").format(expr)
    params.append(c.value)
    return sql.SQL("{} {} %s").format(col, sql.SQL(_CMP[c.op]))


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


def _json_cond(c: Cond, params: list[Any], alias: str) -> sql.Composable:
    col = _col(alias, c.field)
    path = list(c.path)
    if c.op == "contains":
        if not path:
            params.append(Jsonb(c.value))
            return sql.SQL("{} @> %s").format(col)
        params.extend([path, Jsonb(c.value)])
        return sql.SQL("coalesce({} #> %s @> %s, false)").format(col)
    if c.op == "exists":
        params.append(path)
        return sql.SQL("{} #> %s IS {}NULL").format(col, sql.SQL("NOT " if c.value else ""))
    if c.op == "eq":
        # Containment uses the GIN index (jsonb_path_ops).
        params.append(Jsonb(_nest(c.path, c.value)))
        return sql.SQL("{} @> %s").format(col)
    if c.op == "ne":
        params.append(Jsonb(_nest(c.path, c.value)))
        return sql.SQL("NOT ({} @> %s)").format(col)
    if c.op in ("in", "nin"):
        params.extend([path, [json.dumps(v) for v in c.value]])
        expr = sql.SQL("coalesce({} #> %s = ANY(%s::jsonb[]), false)").format(col)
        return expr if c.op == "in" else sql.SQL("NOT {}").format(expr)
    # Ordering comparisons only between values of the same JSON type.
    params.extend([path, _json_type(c.value), path, Jsonb(c.value)])
    return sql.SQL("(jsonb_typeof({} #> %s) = %s AND {} #> %s {} %s)").format(
        col, col, sql.SQL(_CMP[c.op])
    )


def compile_query(
    org: str, query: MemoryQuery, params: list[Any], now: datetime, alias: str = "m"
) -> sql.Composable:
    """The whole WHERE condition of a listing or search: tenant, liveness, validity, filter."""
    parts: list[sql.Composable] = [sql.SQL("{} = %s").format(_col(alias, "organization_id"))]
    params.append(org)
    if not query.include_deleted:
        parts.append(sql.SQL("{} IS NULL").format(_col(alias, "deleted_at")))
    if not query.include_expired:
        params.append(now)
        parts.append(sql.SQL("({0} IS NULL OR {0} > %s)").format(_col(alias, "expires_at")))
    moment = query.as_of or now
    params.extend([moment, moment])
    parts.append(
        sql.SQL("({0} IS NULL OR {0} <= %s) AND ({1} IS NULL OR {1} > %s)").format(
            _col(alias, "valid_from"), _col(alias, "valid_to")
        )
    )
    if query.filter is not None:
        parts.append(compile_filter(query.filter, params, alias))
    return sql.SQL(" AND ").join(parts)


#: Columns with a B-tree led by organization_id (migration 0001), and the id of the primary key.
SCOPE_COLUMNS = ("agent_id", "user_id", "room_id", "kind")


def compile_scope(org: str, query: MemoryQuery, params: list[Any]) -> sql.Composable | None:
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
    parts: list[sql.Composable] = [sql.SQL("m.organization_id = %s")]
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
    return sql.SQL(" AND ").join(parts)
