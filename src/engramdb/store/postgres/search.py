"""Searching memories: the one statement of a search (exact or graph list, text list, or
both, with the first search of a filter counting its rows), its hits, and access counts."""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from ...errors import EngramError
from ...models import utcnow
from ..base import RawHit, SearchSpec
from .compile import compile_query, compile_scope
from .core import StoreCore
from .errors import translate_errors
from .plans import GENERIC_PLAN_SINCE, estimate_statement, generic_plan_fits, plan_rows
from .rows import cols, raw_hit
from .session import Sessions, pairs, set_config_sql, split_settings

__all__ = ["SearchMixin", "SearchStatement", "TtlCache", "scaled_ef_search"]

log = logging.getLogger(__name__)

_OPERATORS = {"cosine": "<=>", "l2": "<->", "ip": "<#>"}


def scaled_ef_search(
    base: int, rows: float, reference_rows: int | None, growth: float = 0.5
) -> int:
    """The HNSW candidate list for a graph of ``rows`` vectors, ``base`` being right for
    ``reference_rows``: ``base * (rows / reference_rows) ** growth`` (the same recall takes more
    candidates in a bigger graph), never below ``base`` nor above pgvector's 1000."""
    if reference_rows is None or reference_rows <= 0 or rows <= reference_rows:
        return base
    return max(base, min(1000, round(base * math.pow(rows / reference_rows, growth))))


#: The whole rows of a sorted list's top ids (``c``), by primary key.
_JOIN_BACK = "JOIN memories m ON m.organization_id = %s AND m.id = c.id"

#: Analyzes memory_access when it has outgrown small statistics; true once they are large.
_REFRESH_ACCESS_STATS = sql.SQL("SELECT engramdb_refresh_access_stats() AS settled")

# Live rows are kept current by every commit; reltuples by VACUUM / ANALYZE / CREATE INDEX.
_TABLE_ROWS = sql.SQL(
    "SELECT greatest(c.reltuples, coalesce(s.n_live_tup, 0), 0)::float8 AS n FROM pg_class c "
    "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = 'memories'::regclass"
)


@dataclass(frozen=True, slots=True)
class SearchStatement:
    """A search's one statement (PostgresStore.search_statement) and how to send it."""

    query: sql.SQL
    params: list[Any]
    #: Settings for this statement (session.split_settings sorts them).
    local: dict[str, str]
    prepare: bool
    #: Set when the statement also counts its filter's rows: the key its choice is kept under.
    probe_key: tuple[Any, ...] | None
    #: Both a vector and a text list: a memory in both comes twice, to be merged.
    merge: bool = False


class TtlCache:
    """A small thread-safe LRU whose entries expire: remembered search plans."""

    def __init__(self, seconds: float, size: int = 4096) -> None:
        self._seconds = seconds
        self._size = size
        self._data: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            if hit[0] < time.monotonic():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return hit[1]

    def put(self, key: Hashable, value: Any) -> None:
        if self._seconds <= 0:
            return
        with self._lock:
            self._data[key] = (time.monotonic() + self._seconds, value)
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class SearchMixin(StoreCore):
    """Mixed into :class:`~.store.PostgresStore`: searching memories."""

    if TYPE_CHECKING:
        _plans: TtlCache
        _generic_rows: TtlCache
        _table_rows: TtlCache
        _sessions: Sessions
        _access_stats_settled: bool

        @property
        def pool(self) -> ConnectionPool: ...

        def _index_type(self, dimensions: int, metric: str) -> str | None: ...

    def known_table_rows(self) -> float | None:
        """What :meth:`_memories_rows` remembers, without reading it when it does not."""
        rows = self._table_rows.get("memories")
        return None if rows is None else float(rows)

    def _memories_rows(self) -> float:
        """Rows in the memories table (all organizations share its HNSW graphs), from the
        statistics; read at most once per ``search_plan_cache_seconds``."""
        rows = self.known_table_rows()
        if rows is None:
            found = self._round_trip(None, _TABLE_ROWS, [])
            rows = float(found[0]["n"]) if found else 0.0
            self._table_rows.put("memories", rows)
        return float(rows)

    def known_generic_rows(self, where: str) -> float | None:
        """What :meth:`generic_rows` remembers of ``where``, without reading it when it does not."""
        rows = self._generic_rows.get(where)
        return None if rows is None else float(rows)

    def generic_rows(self, org: str, where: str) -> float:
        """PostgreSQL's estimate of the rows the condition ``where`` (a search's, on ``m``)
        keeps when planned without its values, as a generic plan is; ``inf`` where it cannot
        say (before PostgreSQL 16, which added EXPLAIN's GENERIC_PLAN). Read once per condition
        and ``search_plan_cache_seconds``: the estimate depends on its shape, not its values."""
        rows = self.known_generic_rows(where)
        if rows is not None:
            return rows
        explained = None
        with translate_errors(), self.pool.connection() as conn:
            if conn.info.server_version >= GENERIC_PLAN_SINCE:
                # The tenant is set as for the search: row-level security adds its condition.
                send = self._sessions.changes(conn, split_settings(org, None)[0])
                try:
                    if send:
                        conn.execute(set_config_sql(len(send), 0), pairs(send))
                        self._sessions.committed(conn, send)
                    cur = conn.cursor(row_factory=tuple_row)
                    # Never prepared: a prepared EXPLAIN (GENERIC_PLAN) wants values for its
                    # placeholders (psycopg prepares a statement run prepare_threshold times).
                    row = cur.execute(estimate_statement(where), prepare=False).fetchone()
                    explained = None if row is None else row[0]
                except psycopg.Error as exc:
                    # Not worth failing a search over: it is planned for its values instead.
                    self._sessions.forget(conn)
                    log.warning("no generic estimate for a search's filter: %s", exc)
        return self.remember_generic_rows(where, explained)

    def remember_generic_rows(self, where: str, explained: Any) -> float:
        """Keeps what the EXPLAIN answered of ``where`` (``None``: nothing) and returns it."""
        rows = math.inf if explained is None else plan_rows(explained)
        self._generic_rows.put(where, rows)
        return rows

    def search_memories(self, org: str, spec: SearchSpec) -> list[RawHit]:
        """Vector and/or text candidates, each list its own top ``limit``, in one round trip.

        The vector list is exact or approximate per query. A filter matching at most
        ``exact_search_max_rows`` rows, and less than ``exact_search_max_share`` of the table,
        is searched exactly: the B-tree indexes on the scope columns select the rows and each
        distance is computed, which is both complete and cheap for few rows. Other filters walk
        the HNSW graph with iterative scans (the scan goes on until enough rows pass the filter)
        and a larger candidate list: a subset that big, or that dense, surrounds any query with
        its own rows, where the graph walk finds them. The filter's rows are counted (up to the
        line) by the search statement itself the first time, then the choice is remembered for
        a while per filter.

        A graph walk returns whole rows as it finds them; the exact and text lists rank
        ``(id, score)`` pairs and read back whole rows for their top ``limit`` only (by primary
        key). The lists are glued with ``UNION ALL``; a memory in both comes twice and is merged
        here.
        """
        statement = self.search_statement(
            org, spec, self._memories_rows, lambda where: self.generic_rows(org, where)
        )
        if statement is None:
            return []
        rows = self._round_trip(
            org,
            statement.query,
            statement.params,
            statement.local,
            prepare=statement.prepare,
            row_factory=tuple_row,
        )
        return self.search_hits(statement, rows)

    def search_statement(
        self,
        org: str,
        spec: SearchSpec,
        table_rows: Callable[[], float],
        generic_rows: Callable[[str], float],
    ) -> SearchStatement | None:
        """The statement of :meth:`search_memories` (``None``: nothing to search), given where
        the table's size comes from (read for a graph walk and to judge a generic plan) and
        PostgreSQL's generic estimate of a condition's rows (:meth:`generic_rows`, read for an
        exact list or a first search); shared with aio.py. The vector space's index must be
        known when a vector is searched (``_index_type``)."""
        now = utcnow()
        # The statement is assembled as text around the rendered filter: psycopg's composition
        # of the whole statement cost a quarter of a search's client CPU.
        parts: list[str] = []
        params: list[Any] = []
        # Plans must follow the filter's values (one user has 10 rows, another 50,000): a
        # generic plan would pick one path for all of them, so statements are planned for
        # their values (custom plans) -- except a vector list alone, whose path the store
        # chose itself, see below.
        local = {"plan_cache_mode": "force_custom_plan"}
        cte = ""
        probe_key: tuple[Any, ...] | None = None
        #: Whether the vector list (or the probe) may keep one generic plan (plans.py).
        generic = False
        line = int(self.settings.exact_search_max_rows)
        columns = cols("m").as_string()
        if spec.embedding is not None:
            vec = np.asarray(spec.embedding, dtype=np.float32)
            dim = int(vec.shape[0])
            vtype = self._index_type(dim, spec.metric)
            exact = True if vtype is None else spec.exact
            if exact is None:
                key = (org, dim, spec.metric, spec.embedding_model, repr(spec.query))
                exact = self._plans.get(key)
                probe_key = key if exact is None else None
            wparams: list[Any] = []
            where = (
                f"{compile_query(org, spec.query, wparams, now)} "
                f"AND m.embedding_dim = {dim} AND m.embedding_model = %s"
            )
            wparams.append(spec.embedding_model)
            op = _OPERATORS[spec.metric]
            kind = "halfvec" if vtype == "halfvec" else "vector"
            # Without the cast the expression does not match the HNSW index: an exact scan.
            exact_dist = f"(m.embedding {op} %b)"
            hnsw_dist = f"(m.embedding::{kind}({dim}) {op} %b::{kind}({dim}))"
            n_col = ", (SELECT exact FROM d) AS _exact" if probe_key else ", NULL::bool AS _exact"
            if not spec.text:
                # A graph walk keeps its generic plan whatever the filter (it is the only plan
                # without a sort); an exact list, or a first search, only where PostgreSQL's
                # estimate without the values reads the filter through its index (plans.py).
                generic = exact is False or generic_plan_fits(generic_rows(where), table_rows())

            def vector_list(exact_list: bool, gate: str) -> None:
                if exact_list:
                    # Sorted in two steps: the filter's rows are ranked as (id, distance) and only
                    # the top ``limit`` are read back whole. Sorting whole rows made PostgreSQL
                    # build every candidate's full tuple first: 0.4 ms of 2.7 over one user's
                    # 1,000 memories, 1.6 ms of 17 over 11,000 (measured at 100,000 memories).
                    parts.append(
                        f"(SELECT {columns}, c._dist, NULL::float8 AS _rank{n_col} FROM (SELECT "
                        f"m.id, {exact_dist} AS _dist FROM memories m WHERE {where}{gate} "
                        f"ORDER BY _dist LIMIT %s) c {_JOIN_BACK} ORDER BY c._dist)"
                    )
                    params.extend([vec, *wparams, spec.limit, org])
                    return
                # A graph walk yields rows in order and stops at ``limit``: only those are built.
                parts.append(
                    f"(SELECT {columns}, {hnsw_dist} AS _dist, NULL::float8 AS _rank{n_col} "
                    f"FROM memories m WHERE {where}{gate} ORDER BY _dist LIMIT %s)"
                )
                params.extend([vec, *wparams, spec.limit])

            if probe_key is not None:
                # First time for this filter: count its rows up to the line, and let the count
                # gate which list runs (a one-time filter: the other is never executed). A
                # filter of scopes only is counted on its B-tree alone (index-only); any other
                # condition is counted on the rows, since it may keep far fewer of them.
                pparams: list[Any] = []
                scope = compile_scope(org, spec.query, pparams)
                if scope is None:
                    scope, pparams = where, wparams
                share = float(self.settings.exact_search_max_share)
                # The table's size comes from the statistics (live rows, kept current by every
                # commit), so a filter keeping most of the table is known as such for free.
                # (The function, not the pg_stat_user_tables view: planning the view's joins took
                # 0.5 ms of the statement's 1.1.)
                cte = (
                    f"WITH n AS (SELECT count(*) AS c FROM (SELECT FROM memories m WHERE {scope} "
                    f"LIMIT %s) p), d AS (SELECT n.c <= {line} AND n.c < {share!r} * greatest("
                    "pg_stat_get_live_tuples('memories'::regclass), "
                    "(SELECT c.reltuples FROM pg_class c WHERE c.oid = 'memories'::regclass), 1) "
                    "AS exact FROM n) "
                )
                params.extend([*pparams, line + 1])
                vector_list(True, " AND (SELECT exact FROM d)")
                vector_list(False, " AND NOT (SELECT exact FROM d)")
            else:
                vector_list(exact, "")
            if not exact:
                ef = spec.ef_search
                if ef is None:
                    s = self.settings
                    base, growth = (
                        (s.hnsw_filtered_ef_search, s.hnsw_filtered_ef_search_growth)
                        if spec.query.filter is not None
                        else (s.hnsw_ef_search, s.hnsw_ef_search_growth)
                    )
                    ef = scaled_ef_search(
                        base, table_rows(), s.hnsw_ef_search_reference_rows, growth
                    )
                local["hnsw.ef_search"] = str(ef)
                # The choice of the graph is made here, not by the planner: without statistics
                # (a table loaded but not yet analyzed) it estimated a handful of rows and
                # sorted every row instead, 15 ms instead of 1.4 at 10,000 memories, growing
                # with the table. Sorting stays possible where nothing else can order a list
                # (the exact and text lists), as the planner then has no other plan.
                local["enable_sort"] = "off"
        if spec.text:
            tparams: list[Any] = [spec.text]
            twhere = compile_query(org, spec.query, tparams, now)
            # Ranked in two steps too, as every match is ranked before the top ones are known.
            parts.append(
                f"(SELECT {columns}, NULL::float8 AS _dist, c._rank, NULL::bool AS _exact FROM "
                "(SELECT m.id, ts_rank_cd(m.tsv, q.q) AS _rank FROM memories m, "
                f"websearch_to_tsquery('english', %s) AS q(q) WHERE {twhere} AND m.tsv @@ q.q "
                f"ORDER BY _rank DESC, m.id DESC LIMIT %s) c {_JOIN_BACK} "
                "ORDER BY c._rank DESC, c.id DESC)"
            )
            params.extend([*tparams, spec.limit, org])
        if not parts:
            return None
        if generic:
            # A vector list alone, once its kind is chosen, is planned once per connection and
            # filter shape where that plan suits every value: the graph walk always (its only
            # plan without a sort), an exact list and a first search where the filter's rows are
            # read through its index (above). Planning each time cost more than running a small
            # search (0.13 against 0.08 ms for one user's memory among 100,000) and took ~0.3 ms
            # of a 3 ms unfiltered one; a first search, its statement twice as long, went from
            # 2.9 to 0.9 ms at 10,000 memories. Text lists stay planned for their words: how many
            # rows a word matches decides between its GIN index and the scope's B-trees.
            local["plan_cache_mode"] = "force_generic_plan"
        return SearchStatement(
            query=sql.SQL(cte + " UNION ALL ".join(parts)),
            params=params,
            local=local,
            # A first search planned for its values runs once per filter value: not worth a
            # prepared statement on every connection.
            prepare=probe_key is None or generic,
            probe_key=probe_key,
            merge=bool(spec.text) and spec.embedding is not None,
        )

    def search_hits(
        self, statement: SearchStatement, rows: Sequence[tuple[Any, ...]]
    ) -> list[RawHit]:
        """What :meth:`search_statement`'s statement returned (rows as tuples, in the order of
        its columns: MEMORY_FIELDS, _dist, _rank, _exact), as hits; remembers the plan a probe
        chose."""
        probe_key = statement.probe_key
        if probe_key is not None and rows:
            decided = next((r[-1] for r in rows if r[-1] is not None), None)
            if decided is not None:
                self._plans.put(probe_key, bool(decided))
        if not statement.merge:  # one list: every row is another memory
            return [raw_hit(r) for r in rows]
        hits: dict[uuid.UUID, RawHit] = {}
        for r in rows:
            seen = hits.get(r[0])
            if seen is None:
                hits[r[0]] = raw_hit(r)
            else:  # found by both lists
                dist = None if r[-3] is None else float(r[-3])
                rank = None if r[-2] is None else float(r[-2])
                hits[r[0]] = RawHit(
                    memory=seen.memory,
                    distance=seen.distance if dist is None else dist,
                    text_rank=seen.text_rank if rank is None else rank,
                )
        return list(hits.values())

    def record_access(self, org: str, counts: Mapping[uuid.UUID, int], at: datetime) -> None:
        if not counts:
            return
        # Upserted in id order, so concurrent flushes (other processes) take the rows' locks in
        # the same order and cannot deadlock; ids of memories deleted meanwhile are skipped
        # (the join), as the foreign key would refuse them.
        ids = sorted(counts)
        self._round_trip(
            org,
            sql.SQL(
                "INSERT INTO memory_access AS a (organization_id, memory_id, access_count, "
                "last_accessed_at) "
                "SELECT m.organization_id, m.id, c.n, %s FROM "
                "unnest(%s::uuid[], %s::int[]) AS c(id, n) "
                "JOIN memories m ON m.organization_id = %s AND m.id = c.id ORDER BY c.id "
                "ON CONFLICT (organization_id, memory_id) DO UPDATE SET "
                "access_count = a.access_count + excluded.access_count, "
                "last_accessed_at = greatest(a.last_accessed_at, excluded.last_accessed_at)"
            ),
            (at, ids, [counts[i] for i in ids], org),
        )
        if not self._access_stats_settled:
            self._refresh_access_stats()

    def _refresh_access_stats(self) -> None:
        """Has ``memory_access`` analyzed once it outgrows what its statistics say, until they
        say it is large (migration 0007): a search's access lookups are prepared, and a plan
        made while the statistics said a page or two reads the whole table for every lookup
        until autovacuum analyzes it again (searches ten times slower in the meantime)."""
        try:
            rows = self._round_trip(None, _REFRESH_ACCESS_STATS, [], prepare=False)
        except EngramError as exc:
            # Advisory, like the counts themselves: autovacuum still analyzes the table. Not
            # asked again (a role without the grant would log this at every flush).
            log.warning("could not refresh the statistics of memory_access: %s", exc)
            self._access_stats_settled = True
            return
        self._access_stats_settled = bool(rows and rows[0]["settled"])
