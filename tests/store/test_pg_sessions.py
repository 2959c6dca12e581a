"""The tenant and search settings kept at session level on pooled PostgreSQL connections
(store/postgres/session.py): one connection serving several tenants in turn gives each only
its own rows, statements without a tenant see none, a search's knobs do not outlive it, and a
failed statement leaves nothing assumed."""

from __future__ import annotations

import ast
import asyncio
import math
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql

from engramdb import Engram, Settings, connect
from engramdb.embeddings.none import NoEmbedder
from engramdb.errors import EngramError
from engramdb.migrations.rls import ORG_SETTING
from engramdb.server.state import DEFAULT_APP_ROLE
from engramdb.store import postgres as postgres_store
from engramdb.store.postgres import PostgresStore
from engramdb.store.postgres.session import TRACKED, Sessions
from tests.conftest import TEST_DIMENSIONS, protocol_trace


def _open(url: str, **settings: Any) -> Engram:
    return connect(url, embedder=NoEmbedder(TEST_DIMENSIONS), settings=Settings(**settings))


def _vec(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(TEST_DIMENSIONS).astype(np.float32)
    return (v / np.linalg.norm(v)).tolist()


@pytest.fixture
def app_db(pg_url: str) -> Any:
    """The library as the application role (row-level security in force) on ONE connection."""
    with _open(pg_url) as owner:  # migrations and the embedding space's index, as the owner
        owner.engine.store.ensure_embedding_space(TEST_DIMENSIONS, "cosine")
        for org in ("acme", "globex"):
            owner.engine.store.ensure_organization(org)
    with _open(pg_url, app_role=DEFAULT_APP_ROLE, pool_min_size=1, pool_max_size=1) as db:
        yield db


def _shown(store: PostgresStore, org: str | None, name: str) -> str:
    rows = store._round_trip(org, sql.SQL("SELECT current_setting(%s, true) AS v"), [name])
    return str(rows[0]["v"])


def test_one_connection_serves_tenants_in_turn_each_seeing_only_its_own(app_db: Engram) -> None:
    acme, globex = app_db.for_organization("acme"), app_db.for_organization("globex")
    mine = {
        org: view.memories.add(f"{org} secret", agent_id="bot", embedding=_vec(i))
        for i, (org, view) in enumerate((("acme", acme), ("globex", globex)))
    }
    for _ in range(3):  # the same connection, switching tenant on every statement
        for org, view in (("acme", acme), ("globex", globex)):
            hits = view.memories.search(embedding=_vec(0), mode="vector", top_k=10)
            assert [h.memory.id for h in hits] == [mine[org].id]
            assert [m.id for m in view.memories.list().items] == [mine[org].id]
            # Transactions (_tx) and single statements (_round_trip) share the tracking.
            other = "globex" if org == "acme" else "acme"
            with pytest.raises(EngramError):
                view.memories.get(mine[other].id)
            assert view.memories.get(mine[org].id).content == f"{org} secret"


def test_a_statement_without_a_tenant_sees_no_tenant_rows(app_db: Engram) -> None:
    store = app_db.engine.store
    assert isinstance(store, PostgresStore)
    acme = app_db.for_organization("acme")
    acme.memories.add("acme only", agent_id="bot", embedding=_vec(1))
    assert _shown(store, "acme", ORG_SETTING) == "acme"
    # The connection's session held acme's tenant; a statement naming none clears it.
    assert _shown(store, None, ORG_SETTING) == ""
    count = sql.SQL("SELECT count(*) AS n FROM memories")
    assert store._round_trip(None, count, [])[0]["n"] == 0
    with store._tx(None) as cur:
        cur.execute("SELECT count(*) AS n FROM memories")
        assert cur.fetchone() == {"n": 0}
    with store._tx("acme") as cur:
        cur.execute("SELECT count(*) AS n FROM memories")
        assert cur.fetchone() == {"n": 1}


def test_a_searchs_settings_do_not_outlive_it(app_db: Engram) -> None:
    store = app_db.engine.store
    assert isinstance(store, PostgresStore)
    acme = app_db.for_organization("acme")
    acme.memories.add("acme note", agent_id="bot", embedding=_vec(2))
    baseline = {name: _shown(store, "acme", name) for name in TRACKED if name != ORG_SETTING}
    # A graph walk turns sorting off and forces generic plans, with its own candidate list.
    acme.memories.search(embedding=_vec(2), mode="vector", exact=False, ef_search=321)
    seen = store._round_trip(
        "acme", sql.SQL("SELECT current_setting('enable_sort') AS s, current_setting("
        "'plan_cache_mode') AS p, current_setting('hnsw.ef_search') AS e"), [],
        {"enable_sort": "off", "plan_cache_mode": "force_generic_plan", "hnsw.ef_search": "321"},
    )  # fmt: skip
    assert seen == [{"s": "off", "p": "force_generic_plan", "e": "321"}]
    # Any later statement not naming them finds the configured values again.
    assert {name: _shown(store, "acme", name) for name in baseline} == baseline
    assert baseline["enable_sort"] == "on"
    with store._tx("acme") as cur:
        cur.execute("SELECT current_setting('enable_sort') AS s")
        assert cur.fetchone() == {"s": "on"}


def _traced(store: PostgresStore, run: Any) -> list[str]:
    """The frontend messages ``run()`` sends on the store's only connection."""
    return [kind for side, kind in protocol_trace(store, run) if side == "F"]


def test_settings_go_only_when_they_change_and_again_after_a_failure(app_db: Engram) -> None:
    store = app_db.engine.store
    assert isinstance(store, PostgresStore)
    acme = app_db.for_organization("acme")
    acme.memories.add("warm up", agent_id="bot", embedding=_vec(3))

    def search() -> None:
        acme.memories.search(embedding=_vec(3), mode="vector", exact=True)

    search()
    # The same tenant and knobs as the session has: the search goes alone.
    assert _traced(store, search).count("Execute") == 1
    # A statement that fails: its transaction (and any setting in it) is undone, so the
    # next statement sends its settings again.
    with pytest.raises(EngramError):
        store._round_trip("acme", sql.SQL("SELECT 1/0"), [])
    assert _traced(store, search).count("Execute") == 2
    assert _traced(store, search).count("Execute") == 1


def test_a_failure_after_the_commit_leaves_nothing_assumed(app_db: Engram) -> None:
    """Settings committed by a statement whose reply then fails to be read: PostgreSQL answers
    ``'infinity'::date``, which psycopg cannot turn into a Python date. The session holds the
    settings, the store never heard it did, so it must send them again."""
    store = app_db.engine.store
    assert isinstance(store, PostgresStore)
    assert _shown(store, "acme", ORG_SETTING) == "acme"
    unreadable = sql.SQL("SELECT 'infinity'::date AS d")
    with pytest.raises(EngramError, match="date too large"):
        store._round_trip("globex", unreadable, [])  # globex's tenant is committed
    assert _shown(store, "acme", ORG_SETTING) == "acme"


def test_sessions_send_what_differs_and_forget_after_failures() -> None:
    sessions = Sessions()

    class Conn:  # any object that can be weakly referenced stands for a connection
        pass

    conn = Conn()
    base = {ORG_SETTING: "", "hnsw.ef_search": "40", "enable_sort": "on",
            "plan_cache_mode": "auto"}  # fmt: skip
    sessions.configured(conn, base)
    assert sessions.changes(conn, {ORG_SETTING: ""}) == {}
    sent = sessions.changes(conn, {ORG_SETTING: "acme", "enable_sort": "off"})
    assert sent == {ORG_SETTING: "acme", "enable_sort": "off"}
    # Not committed (the transaction failed or is running): nothing is assumed.
    assert sessions.changes(conn, {ORG_SETTING: "acme"}) == {ORG_SETTING: "acme"}
    sessions.committed(conn, sent)
    # What a statement does not name goes back to the baseline.
    assert sessions.changes(conn, {ORG_SETTING: "acme"}) == {"enable_sort": "on"}
    sessions.forget(conn)
    assert sessions.changes(conn, {ORG_SETTING: "acme"}) == {**base, ORG_SETTING: "acme"}
    with pytest.raises(ValueError):
        sessions.changes(conn, {"enable_sort": "off"})  # every statement names its tenant
    with pytest.raises(ValueError):
        sessions.configured(Conn(), {ORG_SETTING: ""})


def test_the_store_takes_connections_only_where_it_sets_their_tenant() -> None:
    """A pooled connection keeps the last tenant it was given, so the store must never use one
    without naming its own: every checkout from a pool is in _tx or _round_trip, or in
    generic_rows, whose EXPLAIN goes as a simple query after its own settings (or, for the
    asynchronous pool, aio.py's _round_trip and _generic_rows)."""
    where: list[str] = []
    for path in sorted(Path(postgres_store.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("connection", "getconn")
                    and isinstance(node.func.value, ast.Attribute)
                    and node.func.value.attr in ("pool", "_pool")
                ):
                    where.append(f"{path.name}:{fn.name}")
    assert sorted(set(where)) == [
        "aio.py:_generic_rows",
        "aio.py:_round_trip",
        "search.py:generic_rows",
        "store.py:_round_trip",
        "store.py:_tx",
    ], where


def test_generic_plans_are_judged_under_row_level_security(pg_url: str, app_db: Engram) -> None:
    """As the server's role (row-level security in force, not the table's owner), on a
    connection that last served another tenant: a filter's generic estimate (plans.py) is read,
    so a rare kind is planned for its value and one user's filter keeps a generic plan, and
    both find their memories."""
    store = app_db.engine.store
    assert isinstance(store, PostgresStore)
    acme = app_db.for_organization("acme")
    acme.memories.add_many(
        [{"content": f"note {i}", "user_id": f"u{i % 200}", "embedding": _vec(i)} for i in range(400)]
        + [{"content": f"decision {i}", "kind": "decision", "embedding": _vec(900 + i)}
           for i in range(4)]
    )  # fmt: skip
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ANALYZE memories")
    modes: list[str | None] = []
    original = store._round_trip

    def spy(org, query, params, local=None, **kw):  # type: ignore[no-untyped-def]
        if local and "plan_cache_mode" in local:
            modes.append(local["plan_cache_mode"])
        return original(org, query, params, local, **kw)

    # The one connection last served another tenant, which holds no rows.
    _shown(store, "globex", ORG_SETTING)
    store._round_trip = spy  # type: ignore[method-assign]
    try:
        for _ in range(2):
            hits = acme.memories.search(embedding=_vec(7), mode="vector", kind="decision")
            assert sorted(h.memory.content for h in hits) == [f"decision {i}" for i in range(4)]
        for _ in range(2):
            hits = acme.memories.search(embedding=_vec(7), mode="vector", user_id="u3")
            assert sorted(h.memory.content for h in hits) == ["note 203", "note 3"]
    finally:
        del store._round_trip
    assert modes == ["force_custom_plan"] * 2 + ["force_generic_plan"] * 2


def test_a_filters_estimate_is_read_again_and_again_on_one_connection(app_db: Engram) -> None:
    """A filter's generic estimate expires (``search_plan_cache_seconds``) and is read again,
    on whatever pooled connection comes; here always the same one, by the synchronous and the
    asynchronous path. psycopg prepares a statement run more than ``prepare_threshold`` times on
    a connection, and a prepared ``EXPLAIN (GENERIC_PLAN)`` wants values for its placeholders:
    from its third reading on a connection the estimate failed, every search of that filter was
    planned for its values again, and a warning was logged each time."""
    store = app_db.engine.store
    assert isinstance(store, PostgresStore)
    where = "m.organization_id = %s AND m.user_id = %s AND m.deleted_at IS NULL"
    read: list[float | None] = []
    for _ in range(4):
        store._generic_rows.clear()
        read.append(store.generic_rows("acme", where))

    async def on_the_loop() -> None:
        assert await store.open_async()
        try:
            for _ in range(4):
                store._generic_rows.clear()
                await store._async._generic_rows("acme", where)
                read.append(store.known_generic_rows(where))
        finally:
            await store.close_async()

    asyncio.run(on_the_loop())
    assert len(read) == 8
    assert all(r is not None and math.isfinite(r) for r in read), read
