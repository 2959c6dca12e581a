"""Compiles filter trees and memory queries into SQLite WHERE clauses.

The semantics are those of the PostgreSQL compiler (``store/postgres/compile.py``), condition by
condition: ``$ne`` matches NULL, ``$not`` excludes unknowns, tags any/all/none, JSON equality as
jsonb containment, JSON comparisons only between values of the same JSON type, JSON paths that
index arrays as ``#>`` does. Every query starts with the organization: SQLite has no row-level
security, so this is where tenants are kept apart.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from ...filters import FIELDS, And, Cond, Filter, Not, Or
from ..base import MemoryQuery
from .values import to_json, to_micros, to_uuid

__all__ = ["compile_filter", "compile_query"]

Sql = tuple[str, list[Any]]

_CMP = {"eq": "=", "ne": "IS NOT", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_INDEX = re.compile(r"^[+-]?\d+$")
_INT64 = 2**63


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _param(field: str, value: Any) -> Any:
    kind = FIELDS.get(field)
    if kind == "time":
        return to_micros(value)
    if kind == "uuid":
        return to_uuid(value)
    return value


def compile_filter(node: Filter, alias: str = "m") -> Sql:
    """The SQL condition for ``node`` and its parameters."""
    if isinstance(node, And | Or):
        parts = [compile_filter(n, alias) for n in node.items]
        glue = " AND " if isinstance(node, And) else " OR "
        return "(" + glue.join(p[0] for p in parts) + ")", [x for p in parts for x in p[1]]
    if isinstance(node, Not):
        inner, params = compile_filter(node.item, alias)
        # coalesce: NOT over an unknown (NULL) must still exclude the row, as on PostgreSQL.
        return f"NOT coalesce({inner}, 0)", params
    return _cond(node, alias)


def _cond(c: Cond, alias: str) -> Sql:
    if c.field in ("metadata", "data"):
        return _json_cond(c, f"{alias}.{c.field}")
    col = f"{alias}.{c.field}"
    if FIELDS[c.field] == "tags":
        return _tags_cond(c, col)
    if c.op == "exists":
        return (f"{col} IS NOT NULL" if c.value else f"{col} IS NULL"), []
    if c.op == "eq" and c.value is None:
        return f"{col} IS NULL", []
    if c.op in ("in", "nin"):
        values = [_param(c.field, v) for v in c.value]
        expr = f"{col} IN ({_marks(len(values))})"
        return (expr if c.op == "in" else f"NOT coalesce({expr}, 0)"), values
    return f"{col} {_CMP[c.op]} ?", [_param(c.field, c.value)]


def _tags_cond(c: Cond, col: str) -> Sql:
    tags = [c.value] if c.op == "eq" else list(c.value)
    if c.op == "all":
        distinct = sorted(set(tags))
        return (
            f"(SELECT count(DISTINCT t.value) FROM json_each({col}) t "
            f"WHERE t.value IN ({_marks(len(distinct))})) = ?",
            [*distinct, len(distinct)],
        )
    expr = f"EXISTS (SELECT 1 FROM json_each({col}) t WHERE t.value IN ({_marks(len(tags))}))"
    return (f"NOT {expr}" if c.op == "none" else expr), tags


# -- JSON -----------------------------------------------------------------------------------------


def _key(seg: str) -> str:
    return f'."{seg}"'  # segments are validated by filters.py: [A-Za-z0-9_-]


def _static_path(path: tuple[str, ...]) -> Sql:
    """An object-key path: what jsonb containment walks (arrays are never indexed)."""
    return "?", ["$" + "".join(_key(s) for s in path)]


def _dynamic_path(col: str, path: tuple[str, ...]) -> Sql:
    """A path as PostgreSQL's ``#>`` walks it: a numeric segment indexes an array, and is a key
    of an object; which one is decided per row, from the JSON type found there."""
    expr, params = "?", ["$"]
    for seg in path:
        if not _INDEX.match(seg):
            expr, params = f"({expr} || ?)", [*params, _key(seg)]
            continue
        index = int(seg)
        step = f"[{index}]" if index >= 0 else f"[#{index}]"
        expr, params = (
            f"(CASE json_type({col}, {expr}) WHEN 'array' THEN {expr} || ? ELSE {expr} || ? END)",
            [*params, *params, step, *params, _key(seg)],
        )
    return expr, params


def _bindable(value: Any) -> Any:
    # SQLite integers are 64-bit; JSON numbers beyond that are stored as reals anyway.
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _INT64:
        return float(value)
    return value


def _json_eq(col: str, path: Sql, value: Any) -> Sql:
    """Whether the JSON value at ``path`` equals ``value`` as jsonb does: same type and value."""
    p, pp = path
    if value is None:
        return f"json_type({col}, {p}) = 'null'", pp
    if isinstance(value, bool):
        return f"json_type({col}, {p}) = ?", [*pp, "true" if value else "false"]
    if isinstance(value, int | float):
        return (
            f"(json_type({col}, {p}) IN ('integer', 'real') AND json_extract({col}, {p}) = ?)",
            [*pp, *pp, _bindable(value)],
        )
    return (
        f"(json_type({col}, {p}) = 'text' AND json_extract({col}, {p}) = ?)",
        [*pp, *pp, value],
    )


_JSON_TYPES = {
    "boolean": "IN ('true', 'false')",
    "number": "IN ('integer', 'real')",
    "string": "= 'text'",
    "null": "= 'null'",
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null"


def _json_cond(c: Cond, col: str) -> Sql:
    if c.op == "contains":
        if not c.path:
            return f"coalesce(engram_jsonb_contains({col}, ?), 0)", [to_json(c.value)]
        p, pp = _dynamic_path(col, c.path)
        return f"coalesce(engram_jsonb_contains({col} -> {p}, ?), 0)", [*pp, to_json(c.value)]
    if c.op == "eq":
        return _json_eq(col, _static_path(c.path), c.value)
    if c.op == "ne":
        expr, params = _json_eq(col, _static_path(c.path), c.value)
        return f"NOT coalesce({expr}, 0)", params
    path = _dynamic_path(col, c.path)
    if c.op == "exists":
        return f"json_type({col}, {path[0]}) IS {'NOT ' if c.value else ''}NULL", path[1]
    if c.op in ("in", "nin"):
        parts = [_json_eq(col, path, v) for v in c.value]
        expr = "(" + " OR ".join(p[0] for p in parts) + ")" if parts else "0"
        params = [x for p in parts for x in p[1]]
        expr = f"coalesce({expr}, 0)"
        return (expr if c.op == "in" else f"NOT {expr}"), params
    # Ordering comparisons only between values of the same JSON type.
    kind = _json_type(c.value)
    p, pp = path
    typed = f"coalesce(json_type({col}, {p}) {_JSON_TYPES[kind]}, 0)"
    if kind == "null":  # null sorts equal to null
        return (f"({typed} AND {1 if c.op in ('gte', 'lte') else 0})", pp)
    return (
        f"({typed} AND json_extract({col}, {p}) {_CMP[c.op]} ?)",
        [*pp, *pp, _bindable(c.value)],
    )


def compile_query(org: str, query: MemoryQuery, now: datetime, alias: str = "m") -> Sql:
    """The whole WHERE condition of a listing or search: tenant, liveness, validity, filter."""
    parts = [f"{alias}.organization_id = ?"]
    params: list[Any] = [org]
    if not query.include_deleted:
        parts.append(f"{alias}.deleted_at IS NULL")
    if not query.include_expired:
        parts.append(f"({alias}.expires_at IS NULL OR {alias}.expires_at > ?)")
        params.append(to_micros(now))
    moment = to_micros(query.as_of or now)
    parts.append(
        f"({alias}.valid_from IS NULL OR {alias}.valid_from <= ?) "
        f"AND ({alias}.valid_to IS NULL OR {alias}.valid_to > ?)"
    )
    params.extend([moment, moment])
    if query.filter is not None:
        sql, fparams = compile_filter(query.filter, alias)
        parts.append(sql)
        params.extend(fparams)
    return " AND ".join(parts), params
