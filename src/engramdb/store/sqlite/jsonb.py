"""PostgreSQL's jsonb containment (``@>``) as a pure function, registered as an SQLite UDF."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["contains", "jsonb_contains"]


def _same_scalar(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return bool(a == b)  # jsonb compares numbers by value: 5 = 5.0
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return a is None and b is None


def contains(a: Any, b: Any, top: bool = True) -> bool:
    """Whether JSON value ``a`` contains ``b`` by jsonb's rules.

    Objects contain objects whose keys they all have with contained values; arrays contain arrays
    whose every element is contained in some element; scalars contain only equal scalars of the
    same type; and, only at the top level, an array contains a scalar it has as an element.
    """
    if isinstance(b, dict):
        return isinstance(a, dict) and all(
            k in a and contains(a[k], v, False) for k, v in b.items()
        )
    if isinstance(b, list):
        return isinstance(a, list) and all(any(contains(x, y, False) for x in a) for y in b)
    if isinstance(a, list):
        return top and any(not isinstance(x, dict | list) and _same_scalar(x, b) for x in a)
    if isinstance(a, dict):
        return False
    return _same_scalar(a, b)


def jsonb_contains(left: str | None, right: str | None) -> int | None:
    """SQL ``engram_jsonb_contains(json_text, json_text)``: 1, 0, or NULL for a NULL side."""
    if left is None or right is None:
        return None
    return int(contains(json.loads(left), json.loads(right)))
