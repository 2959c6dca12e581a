"""The pure parts of judging a search's generic plan (store/postgres/plans.py)."""

from __future__ import annotations

import json
import math

from engramdb.store.postgres.plans import (
    GENERIC_PLAN_MAX_SHARE,
    generic_plan_fits,
    numbered,
    plan_rows,
)


def test_placeholders_are_numbered_in_order_and_escapes_kept() -> None:
    text = "m.a = %s AND m.b @> %s::text[] AND m.v <=> %b < 1 AND m.c LIKE 'x%%' AND m.d = %t"
    assert numbered(text) == (
        "m.a = $1 AND m.b @> $2::text[] AND m.v <=> $3 < 1 AND m.c LIKE 'x%' AND m.d = $4"
    )
    assert numbered("no placeholder") == "no placeholder"


def test_plan_rows_reads_the_top_node_parsed_or_as_text() -> None:
    explained = [{"Plan": {"Node Type": "Index Scan", "Plan Rows": 42, "Plans": []}}]
    assert plan_rows(explained) == 42.0
    assert plan_rows(json.dumps(explained)) == 42.0
    assert plan_rows(json.dumps(explained).encode()) == 42.0
    for odd in ([], [{}], [{"Plan": {}}], {"Plan": 1}, [{"Plan": {"Plan Rows": "many"}}]):
        assert plan_rows(odd) == math.inf


def test_a_generic_plan_fits_a_small_share_of_the_table_only() -> None:
    table = 100_000.0
    assert generic_plan_fits(3, table)  # one user among thousands
    assert generic_plan_fits(GENERIC_PLAN_MAX_SHARE * table, table)
    assert not generic_plan_fits(GENERIC_PLAN_MAX_SHARE * table + 1, table)
    assert not generic_plan_fits(table / 2, table)  # one of two kinds, whichever is searched
    assert not generic_plan_fits(math.inf, table)  # no estimate (PostgreSQL 15)
    # An empty or never analyzed table counts as one row: only a near-empty estimate fits.
    assert generic_plan_fits(0, 0) and not generic_plan_fits(2, 0)
