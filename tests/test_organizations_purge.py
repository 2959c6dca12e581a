"""Forgetting a tenant: ``Organizations.delete(org, purge=True)`` on PostgreSQL and SQLite.

The tables are read from the catalog (information_schema, sqlite_master), so a table added
later is covered without touching this file: the world below must give the purged
organization rows in every one of them, and none may be left after the purge.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

import engramdb
from engramdb import Engram, Settings, connect
from engramdb.embeddings.hashing import HashEmbedder
from engramdb.models import utcnow
from engramdb.models.security import UsageEvent
from engramdb.service.audit import AuditLog
from engramdb.service.keys import ApiKeys
from engramdb.service.organizations import Organizations
from engramdb.store.base import Store
from tests.conftest import TEST_DIMENSIONS, open_backend
from tests.model.test_cascades import _agent_world

Counts = dict[tuple[str, str], int]  # (table, organization) -> rows


@dataclass
class Tenancy:
    backend: str
    url: str  # what a second connection (the catalog, the CLI) opens
    home: Engram  # the default organization
    store: Store
    orgs: Organizations
    keys: ApiKeys
    audit: AuditLog


@pytest.fixture(params=["postgres", "sqlite"])
def t(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tenancy]:
    backend = str(request.param)
    home = open_backend(backend, request, tmp_path)
    url = (
        request.getfixturevalue("pg_url")
        if backend == "postgres"
        else f"sqlite:///{tmp_path / 'memories.db'}"
    )
    store = home.engine.store
    yield Tenancy(backend, url, home, store, Organizations(store), ApiKeys(store), AuditLog(store))
    home.close()


def _catalog(t: Tenancy) -> tuple[list[str], Counts]:
    """Every table with an ``organization_id`` column, and its rows per organization, read by a
    connection of its own (the database owner on PostgreSQL: row-level security aside)."""
    counts: Counts = {}
    if t.backend == "postgres":
        with psycopg.connect(t.url, autocommit=True) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT c.table_name FROM information_schema.columns c "
                "JOIN information_schema.tables s USING (table_schema, table_name) "
                "WHERE c.column_name = 'organization_id' AND c.table_schema = 'public' "
                "AND s.table_type = 'BASE TABLE' ORDER BY 1"
            )]  # fmt: skip
            for table in tables:
                for org, n in conn.execute(
                    f'SELECT organization_id, count(*) FROM "{table}" GROUP BY 1'
                ):
                    counts[(table, org)] = n
        return tables, counts
    conn = sqlite3.connect(t.url.removeprefix("sqlite:///"))
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT m.name FROM sqlite_master m JOIN pragma_table_info(m.name) c "
            "WHERE m.type = 'table' AND c.name = 'organization_id' ORDER BY 1"
        )]  # fmt: skip
        for table in tables:
            for org, n in conn.execute(
                f'SELECT organization_id, count(*) FROM "{table}" GROUP BY 1'
            ):
                counts[(table, org)] = n
        return tables, counts
    finally:
        conn.close()


def _organization_ids(t: Tenancy) -> set[str]:
    """Ids in the organizations table, deleted ones included."""
    if t.backend == "postgres":
        with psycopg.connect(t.url, autocommit=True) as conn:
            return {r[0] for r in conn.execute("SELECT id FROM organizations")}
    conn = sqlite3.connect(t.url.removeprefix("sqlite:///"))
    try:
        return {r[0] for r in conn.execute("SELECT id FROM organizations")}
    finally:
        conn.close()


def _fill(t: Tenancy, db: Engram) -> str:
    """Something in every tenant table for ``db``'s organization; returns an API key secret."""
    org = db.organization
    w = _agent_world(db)
    db.memories.update(w["alice_memory"].id, content="alice lives in Porto")  # memory history
    db.messages.update(w["alice_lobby_msg"].id, text="edited")
    db.blocks.append(w["shared_block"].id, " more")  # block history
    _key, secret = t.keys.create(org, name="ci", scopes="read,write")
    t.keys.authenticate(secret)  # its rate-limit and quota windows
    t.store.insert_usage_events([_usage(org)])
    t.audit.record(org, actor_type="api_key", actor_id="key:test", action="create",
                   resource_type="memory", resource_id=str(w["bot_memory"].id))  # fmt: skip
    return secret


def _usage(org: str) -> UsageEvent:
    return UsageEvent(
        id=uuid.uuid4(), organization_id=org, endpoint="/v1/memories", method="POST",
        status_code=201, latency_ms=1.5, created_at=utcnow(),
    )  # fmt: skip


def _hits(db: Engram) -> list[tuple[uuid.UUID, float]]:
    return [(h.memory.id, round(h.score, 6)) for h in db.memories.search("alice tea", top_k=5)]


def test_a_purge_forgets_every_row_of_the_tenant_and_nothing_else(t: Tenancy) -> None:
    acme, globex = t.home.for_organization("acme"), t.home.for_organization("globex")
    secrets = {db.organization: _fill(t, db) for db in (t.home, acme, globex)}
    searched = {db.organization: _hits(db) for db in (t.home, acme, globex)}
    assert all(searched.values())
    t.home.flush()
    tables, before = _catalog(t)
    assert {"memories", "memory_history", "api_keys", "usage_events", "audit_log"} <= set(tables)
    unfilled = [table for table in tables if (table, "acme") not in before]
    assert not unfilled, f"extend _fill: the purge is not proven on {unfilled}"

    t.orgs.delete("acme", purge=True)

    _tables, after = _catalog(t)
    assert [key for key in after if key[1] == "acme"] == []
    assert after == {key: n for key, n in before.items() if key[1] != "acme"}
    assert _organization_ids(t) == {"default", "globex"}
    with pytest.raises(engramdb.NotFound):
        t.orgs.get("acme")
    assert "acme" not in [o.id for o in t.orgs.list().items]
    with pytest.raises(engramdb.AuthenticationError):
        t.keys.authenticate(secrets["acme"])
    assert t.keys.authenticate(secrets["globex"]).organization_id == "globex"
    # The others search as before (on SQLite, through the vector cache that held acme too).
    assert _hits(t.home) == searched["default"] and _hits(globex) == searched["globex"]


def test_a_soft_deleted_organization_can_be_purged(t: Tenancy) -> None:
    acme = t.home.for_organization("acme")
    acme.memories.add("a secret of acme", agent_id="bot")
    t.orgs.delete("acme")
    with pytest.raises(engramdb.NotFound):
        t.orgs.delete("acme")  # soft-deleting twice: it is not there any more
    assert "acme" in _organization_ids(t)  # ... but its row and data are
    t.orgs.delete("acme", purge=True)
    assert "acme" not in _organization_ids(t)
    assert [key for key in _catalog(t)[1] if key[1] == "acme"] == []
    with pytest.raises(engramdb.NotFound):
        t.orgs.delete("acme", purge=True)  # purging twice


def test_the_default_organization_cannot_be_purged(t: Tenancy) -> None:
    kept = t.home.memories.add("the default organization's memory")
    before = _catalog(t)[1]
    with pytest.raises(engramdb.Conflict) as info:
        t.orgs.delete("default", purge=True)
    assert info.value.code == "conflict" and "default organization" in info.value.message
    assert _catalog(t)[1] == before
    assert t.home.memories.get(kept.id).content == kept.content


def test_an_unknown_or_malformed_organization_is_refused(t: Tenancy) -> None:
    with pytest.raises(engramdb.NotFound) as info:
        t.orgs.delete("nobody", purge=True)
    assert info.value.details == {"id": "nobody"}
    with pytest.raises(engramdb.InvalidInput):
        t.orgs.delete("no such id!", purge=True)


def test_a_purged_id_starts_over_empty_and_old_views_write_nothing(t: Tenancy) -> None:
    acme = t.home.for_organization("acme")
    acme.memories.add("acme's old secret", agent_id="bot", user_id="alice")
    secret = _fill(t, acme)
    t.orgs.delete("acme", purge=True)
    # A view opened before the purge finds nothing and cannot write into the void.
    assert acme.memories.list().items == [] and acme.memories.search("secret") == []
    with pytest.raises(engramdb.NotFound):
        acme.memories.add("written after the purge")
    assert [key for key in _catalog(t)[1] if key[1] == "acme"] == []
    # Naming the id again makes a new, empty organization; the old key stays refused.
    again = t.home.for_organization("acme")
    assert t.orgs.get("acme").name == "acme"
    assert again.memories.search("acme's old secret") == [] and again.agents.list().items == []
    with pytest.raises(engramdb.AuthenticationError):
        t.keys.authenticate(secret)


def test_usage_queued_for_a_purged_organization_is_dropped_not_the_others(t: Tenancy) -> None:
    t.home.for_organization("acme")
    t.orgs.delete("acme", purge=True)
    # A server flushes usage a moment after the requests: acme's may arrive after its purge.
    t.store.insert_usage_events([_usage("acme"), _usage("default"), _usage("acme")])
    counts = _catalog(t)[1]
    assert counts[("usage_events", "default")] == 1
    assert ("usage_events", "acme") not in counts


def test_sqlite_vector_caches_let_go_of_a_purged_organization(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    opened = [
        connect(url, embedder=HashEmbedder(TEST_DIMENSIONS), settings=Settings()) for _ in range(2)
    ]  # two connections: each has its own vector cache, as two processes would
    first, second = opened
    try:
        for db in opened:
            for org in ("acme", "default"):
                view = db.for_organization(org)
                view.memories.add(f"{org} keeps its tea here", agent_id="bot")
                assert view.memories.search("tea", mode="vector")

        def cached(db: Engram) -> set[str]:
            return {key[0] for key in db.engine.store._vectors._parts}  # type: ignore[attr-defined]

        assert cached(first) == cached(second) == {"acme", "default"}
        expected = [h.memory.id for h in second.memories.search("tea", mode="vector")]
        Organizations(first.engine.store).delete("acme", purge=True)
        assert cached(first) == {"default"}  # the purging process drops it at once
        # The other process drops it on its next search, from the vector change log.
        assert [h.memory.id for h in second.memories.search("tea", mode="vector")] == expected
        assert cached(second) == {"default"}
    finally:
        for db in opened:
            db.close()
