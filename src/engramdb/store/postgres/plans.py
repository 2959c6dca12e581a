"""Whether a search statement may keep one generic plan for every value of its filter.

A prepared statement planned once (``plan_cache_mode = force_generic_plan``) saves planning on
every search, 0.3-0.4 ms on the benchmark machine against a small search's 0.4-0.7 ms. But a
generic plan is made without the filter's values: PostgreSQL estimates ``kind = $1`` as
1/(distinct kinds) of the table, whatever kind is searched. Where that share is large -- few
kinds, two agents of very different sizes, one big tenant beside small ones -- the plan reads
the whole organization to find a rare value's five rows (12 ms instead of 1.2 at 10,000
memories, and growing with the table). So a generic plan is kept only where PostgreSQL's own
generic estimate of the filter is a small share of the table: it then reads the filter's rows
by their index, which is right for every value, few rows or many. Other filters are planned
for their values on each search.

The estimate comes from ``EXPLAIN (GENERIC_PLAN)`` (PostgreSQL 16 and later), once per filter
shape; these functions are the pure parts of that.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from typing import Any

__all__ = [
    "GENERIC_PLAN_MAX_SHARE", "GENERIC_PLAN_SINCE", "estimate_statement", "generic_plan_fits",
    "numbered", "plan_rows",
]  # fmt: skip

#: The server version whose EXPLAIN plans a statement without values (GENERIC_PLAN).
GENERIC_PLAN_SINCE = 160000

#: A generic plan is kept when its estimate of the filter's rows is at most this share of the
#: table: PostgreSQL reads a share that small through an index (the filter's own).
GENERIC_PLAN_MAX_SHARE = 0.02

_PLACEHOLDER = re.compile(r"%[sbt%]")


def numbered(text: str) -> str:
    """``text`` with psycopg's placeholders (``%s``, ``%b``, ``%t``) as ``$1``, ``$2``, … and
    ``%%`` as ``%``: a statement PostgreSQL can plan without values (EXPLAIN GENERIC_PLAN)."""
    counter = itertools.count(1)

    def number(match: re.Match[str]) -> str:
        return "%" if match.group() == "%%" else f"${next(counter)}"

    return _PLACEHOLDER.sub(number, text)


def estimate_statement(where: str) -> str:
    """The EXPLAIN whose answer :func:`plan_rows` reads: the rows of memories (``m``) that the
    condition ``where`` keeps, planned without its values. Sent without parameters (a simple
    query), as its placeholders have none."""
    return "EXPLAIN (GENERIC_PLAN, FORMAT JSON) SELECT FROM memories m WHERE " + numbered(where)


def plan_rows(explained: Any) -> float:
    """The estimated rows of the top node of ``EXPLAIN (FORMAT JSON)``'s output (parsed or as
    text); ``inf`` when the output has none."""
    if isinstance(explained, str | bytes):
        explained = json.loads(explained)
    try:
        return float(explained[0]["Plan"]["Plan Rows"])
    except (IndexError, KeyError, TypeError, ValueError):
        return math.inf


def generic_plan_fits(estimated_rows: float, table_rows: float) -> bool:
    """Whether a filter PostgreSQL estimates at ``estimated_rows`` without its values, in a
    table of ``table_rows``, may keep a generic plan (see the module's docstring)."""
    return estimated_rows <= GENERIC_PLAN_MAX_SHARE * max(table_rows, 1.0)
