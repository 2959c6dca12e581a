"""Filter expressions: one validated tree that every backend compiles; no SQL lives here.

A filter is written as a dict, Mongo-style, and parsed into :class:`Cond` / :class:`And` /
:class:`Or` / :class:`Not` nodes::

    {"kind": "episodic",                              # equality
     "importance": {"$gte": 0.75},                    # comparison (or {"$gte": "high"})
     "tags": {"$any": ["travel", "food"]},            # tags: $any / $all / $none
     "metadata.source": "chat",                       # a path into metadata (or data.*)
     "metadata": {"$contains": {"lang": "en"}},       # containment
     "created_at": {"$gte": "2026-01-01T00:00:00Z"},
     "$or": [{"user_id": "alice"}, {"user_id": "bob"}]}

Comparisons on JSON paths match only values of the same JSON type as the operand, on every
backend, so ``{"metadata.n": {"$gt": 5}}`` never matches the string ``"7"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from .errors import InvalidFilter
from .models.common import IMPORTANCE_LEVELS

__all__ = [
    "And",
    "Cond",
    "Filter",
    "Not",
    "Or",
    "parse_filter",
    "scope_filter",
]

Op = Literal[
    "eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "any", "all", "none", "contains", "exists"
]


@dataclass(frozen=True)
class Cond:
    """``field op value``; ``path`` is set for ``metadata.*`` / ``data.*`` fields."""

    field: str
    op: Op
    value: Any
    path: tuple[str, ...] = ()


@dataclass(frozen=True)
class And:
    items: tuple[Filter, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Filter, ...]


@dataclass(frozen=True)
class Not:
    item: Filter


Filter = Cond | And | Or | Not

#: Column fields and the kind of value they hold.
FIELDS: dict[str, str] = {
    "id": "uuid",
    "agent_id": "text",
    "user_id": "text",
    "room_id": "text",
    "kind": "text",
    "scope": "text",
    "level": "text",
    "content_hash": "text",
    "embedding_model": "text",
    "importance": "number",
    "access_count": "number",
    "version": "number",
    "created_at": "time",
    "updated_at": "time",
    "valid_from": "time",
    "valid_to": "time",
    "expires_at": "time",
    "last_accessed_at": "time",
    "tags": "tags",
}
JSON_FIELDS = ("metadata", "data")

_OPS_BY_TYPE: dict[str, set[str]] = {
    "uuid": {"eq", "ne", "in", "nin", "exists"},
    "text": {"eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "exists"},
    "number": {"eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "exists"},
    "time": {"eq", "ne", "gt", "gte", "lt", "lte", "exists"},
    "tags": {"any", "all", "none", "eq"},
    "json": {"eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "exists", "contains"},
}
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
MAX_DEPTH = 8
MAX_NODES = 200


def parse_filter(spec: dict[str, Any] | None) -> Filter | None:
    """Parse and validate a filter dict; raise :class:`InvalidFilter` naming what is wrong."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise InvalidFilter("filters must be an object", details={"got": type(spec).__name__})
    counter = [0]
    node = _parse_obj(spec, 0, counter)
    return node


def scope_filter(**scopes: Any) -> Filter | None:
    """Build the filter for the scope keyword arguments (``agent_id="x"``, ``tags=[…]``, …).

    ``None`` values are ignored; a list for an id field means "any of"; ``tags`` means "any of".
    """
    items: list[Filter] = []
    for name, value in scopes.items():
        if value is None:
            continue
        if name == "tags":
            tags = [value] if isinstance(value, str) else list(value)
            items.append(_cond("tags", "any", tags))
        elif isinstance(value, list | tuple | set | frozenset):
            items.append(_cond(name, "in", list(value)))
        else:
            items.append(_cond(name, "eq", value))
    return combine(*items)


def combine(*filters: Filter | None) -> Filter | None:
    """AND the given filters together, dropping ``None``s and flattening nested ANDs."""
    flat: list[Filter] = []
    for f in filters:
        if f is None:
            continue
        if isinstance(f, And):
            flat.extend(f.items)
        else:
            flat.append(f)
    if not flat:
        return None
    if len(flat) == 1:
        return flat[0]
    return And(tuple(flat))


def _parse_obj(spec: dict[str, Any], depth: int, counter: list[int]) -> Filter:
    if depth > MAX_DEPTH:
        raise InvalidFilter(f"filters nest deeper than {MAX_DEPTH} levels")
    items: list[Filter] = []
    for key, value in spec.items():
        counter[0] += 1
        if counter[0] > MAX_NODES:
            raise InvalidFilter(f"filters have more than {MAX_NODES} conditions")
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise InvalidFilter(
                    f"{key} takes a non-empty list of filters", details={"key": key}
                )
            subs = []
            for sub in value:
                if not isinstance(sub, dict):
                    raise InvalidFilter(f"{key} items must be objects", details={"key": key})
                subs.append(_parse_obj(sub, depth + 1, counter))
            items.append(And(tuple(subs)) if key == "$and" else Or(tuple(subs)))
        elif key == "$not":
            if not isinstance(value, dict):
                raise InvalidFilter("$not takes a filter object", details={"key": key})
            items.append(Not(_parse_obj(value, depth + 1, counter)))
        elif key.startswith("$"):
            raise InvalidFilter(
                f"unknown operator {key!r} at the top of a filter", details={"key": key}
            )
        else:
            items.extend(_parse_field(key, value))
    if not items:
        raise InvalidFilter("an empty filter object matches nothing useful; omit it instead")
    return items[0] if len(items) == 1 else And(tuple(items))


def _parse_field(key: str, value: Any) -> list[Filter]:
    if isinstance(value, dict) and value and all(k.startswith("$") for k in value):
        return [_cond(key, op[1:], operand) for op, operand in value.items()]
    if key == "tags" and isinstance(value, list):
        return [_cond(key, "all", value)]
    return [_cond(key, "eq", value)]


def _cond(key: str, op: str, value: Any) -> Cond:
    head, _, rest = key.partition(".")
    if head in JSON_FIELDS:
        path = tuple(rest.split(".")) if rest else ()
        for seg in path:
            if not _PATH_SEGMENT.match(seg):
                raise InvalidFilter(f"bad path segment {seg!r} in {key!r}", details={"field": key})
        if not path and op != "contains":
            raise InvalidFilter(
                f"{head!r} alone takes only $contains; name a path such as {head}.source",
                details={"field": key},
            )
        kind = "json"
        field = head
    elif key in FIELDS and not rest:
        kind = FIELDS[key]
        field = key
        path = ()
    else:
        raise InvalidFilter(
            f"unknown filter field {key!r}",
            details={"field": key, "known": sorted([*FIELDS, "metadata.*", "data.*"])},
        )
    if op not in _OPS_BY_TYPE[kind]:
        raise InvalidFilter(
            f"operator ${op} does not apply to {key!r}",
            details={"field": key, "operator": op, "allowed": sorted(_OPS_BY_TYPE[kind])},
        )
    return Cond(field, op, _check_value(key, kind, op, value), path)  # type: ignore[arg-type]


def _check_value(key: str, kind: str, op: str, value: Any) -> Any:
    if op == "exists":
        if not isinstance(value, bool):
            raise InvalidFilter(f"$exists on {key!r} takes true or false", details={"field": key})
        return value
    if op in ("in", "nin", "any", "all", "none"):
        if not isinstance(value, list | tuple) or len(value) > 1000:
            raise InvalidFilter(
                f"${op} on {key!r} takes a list of at most 1000 values", details={"field": key}
            )
        return [_scalar(key, kind, v) for v in value]
    if op == "contains":
        if not isinstance(value, dict | list):
            raise InvalidFilter(
                f"$contains on {key!r} takes an object or list", details={"field": key}
            )
        return value
    if kind == "tags":  # eq on tags means "has this tag"
        return _scalar(key, kind, value)
    return _scalar(key, kind, value)


def _scalar(key: str, kind: str, value: Any) -> Any:
    bad = InvalidFilter(f"value {value!r} does not fit field {key!r}", details={"field": key})
    if kind in ("text", "tags"):
        if not isinstance(value, str):
            raise bad
        return value
    if kind == "uuid":
        import uuid

        try:
            return uuid.UUID(str(value))
        except ValueError:
            raise bad from None
    if kind == "number":
        if key == "importance" and isinstance(value, str) and value.lower() in IMPORTANCE_LEVELS:
            # The seeds' levels (low/medium/high/critical) name points on the 0-1 scale.
            return IMPORTANCE_LEVELS[value.lower()]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        return value
    if kind == "time":
        return parse_time(value, key)
    # json: scalars only (objects go through $contains)
    if value is not None and not isinstance(value, str | int | float | bool):
        raise bad
    return value


def parse_time(value: Any, key: str = "time") -> datetime:
    """Accept a datetime or an ISO 8601 string; naive times are taken as UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidFilter(
                f"{value!r} is not an ISO 8601 time", details={"field": key}
            ) from None
    else:
        raise InvalidFilter(f"{key!r} takes an ISO 8601 time", details={"field": key})
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
