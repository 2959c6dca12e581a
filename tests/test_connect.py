"""connect(): the embedded default, process sharing, migrations gate, embedding spaces."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import engramdb
from engramdb import Settings
from engramdb.embeddings.hashing import HashEmbedder
from engramdb.migrations import runner
from engramdb.models import utcnow


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="engramdb-connect-"))
    os.chmod(path, 0o755)
    yield path


def test_connect_with_no_url_starts_the_embedded_database(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir)
    with engramdb.connect(settings=settings, embedder=HashEmbedder(32)) as db:
        m = db.memories.add("zero setup works", agent_id="a")
        assert db.memories.get(m.id).content == "zero setup works"
        url = db.engine.store.url  # type: ignore[attr-defined]
        assert "host=" in url and str(data_dir) in url  # Unix socket inside the data directory
    current, head = _status(url)
    assert current == head


def _status(url: str) -> tuple[str | None, str]:
    return runner.current(lambda: psycopg.connect(url), "postgresql"), runner.head()


def test_two_processes_share_one_embedded_server(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir)
    with engramdb.connect(settings=settings, embedder=HashEmbedder(32)) as db:
        db.memories.add("written by the parent", agent_id="shared")
        child = textwrap.dedent(
            f"""
            import engramdb
            from engramdb import Settings
            from engramdb.embeddings.hashing import HashEmbedder
            with engramdb.connect(settings=Settings(data_dir={str(data_dir)!r}),
                                  embedder=HashEmbedder(32)) as db:
                seen = [m.content for m in db.memories.list(agent_id="shared").items]
                assert "written by the parent" in seen, seen
                db.memories.add("written by the child", agent_id="shared")
            print("child ok")
            """
        )
        out = subprocess.run(
            [sys.executable, "-c", child], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        assert "child ok" in out.stdout
        # the child left; the parent's server is still up and sees the child's write
        seen = {m.content for m in db.memories.list(agent_id="shared").items}
        assert seen == {"written by the parent", "written by the child"}


def test_database_behind_the_code_raises_migration_required(pg_url: str) -> None:
    runner.downgrade(lambda: psycopg.connect(pg_url), "postgresql", "0001")
    with pytest.raises(engramdb.MigrationRequired) as info:
        engramdb.connect(pg_url, embedder=HashEmbedder(64), settings=Settings())
    assert "engramdb db upgrade" in str(info.value)
    assert info.value.details["current"] == "0001"
    # auto_migrate brings it to head
    with engramdb.connect(
        pg_url, embedder=HashEmbedder(64), settings=Settings(auto_migrate=True)
    ) as db:
        db.memories.add("after upgrade")
    assert _status(pg_url)[0] == runner.head()


def test_downgrade_to_base_and_upgrade_again(pg_url: str) -> None:
    connect = lambda: psycopg.connect(pg_url)  # noqa: E731
    runner.downgrade(connect, "postgresql", "base")
    assert runner.current(connect, "postgresql") is None
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        ).fetchone()
        assert tables is not None and tables[0] == 0
    runner.upgrade(connect, "postgresql")
    assert runner.current(connect, "postgresql") == runner.head()


def test_migration_history_is_linear() -> None:
    revs = runner.history()
    assert revs[0].down_revision is None
    for prev, nxt in itertools.pairwise(revs):
        assert nxt.down_revision == prev.revision
    assert revs[-1].revision == runner.head()


def test_embeddings_stay_in_the_row(pg_url: str) -> None:
    """Migration 0004: a memory whose row passes the 2 kB TOAST threshold keeps its embedding
    inline (the long content moves out instead), so exact distances read one relation."""
    db = engramdb.connect(pg_url, embedder=HashEmbedder(384), settings=Settings())
    try:
        # Incompressible content, shorter than the 1.5 kB vector, taking the row past 2 kB:
        # the toaster moves the largest movable value out of line, the vector by default.
        content = " ".join(os.urandom(8).hex() for _ in range(36))
        m = db.memories.add(content, agent_id="a")
    finally:
        db.close()
    with psycopg.connect(pg_url) as conn:
        storage = conn.execute(
            "SELECT attstorage FROM pg_attribute WHERE attrelid = 'memories'::regclass "
            "AND attname = 'embedding'"
        ).fetchone()
        out_of_line = conn.execute(
            "SELECT pg_column_toast_chunk_id(embedding) IS NOT NULL, "
            "pg_column_toast_chunk_id(content) IS NOT NULL FROM memories WHERE id = %s",
            (m.id,),
        ).fetchone()
    assert storage == ("m",)
    assert out_of_line is not None and out_of_line[0] is False


def test_access_counts_live_beside_the_row_and_survive_a_downgrade(pg_url: str) -> None:
    """Migration 0005: accesses are counted in memory_access, never by rewriting the memory's
    (wide, HNSW-indexed) row; reads, filters and a downgrade to 0004 all see the same totals."""
    db = engramdb.connect(pg_url, embedder=HashEmbedder(16), settings=Settings())
    try:
        m = db.memories.add("counted", agent_id="a")
        other = db.memories.add("not counted", agent_id="a")
        for _ in range(3):
            db.memories.get(m.id)
        db.flush()
        assert db.memories.get(m.id).access_count == 3
        # By a filter too (the total, not the row's column).
        page = db.memories.list(filters={"access_count": {"$gte": 3}})
        assert [x.id for x in page.items] == [m.id]
        db.flush()  # the get and list above are accesses as well
        total = db.memories.get(m.id).access_count
    finally:
        db.close()
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT access_count, version FROM memories WHERE id = %s", (m.id,)
        ).fetchone()
        assert row == (0, 1)  # the memory's row was not rewritten
    connect = lambda: psycopg.connect(pg_url)  # noqa: E731
    runner.downgrade(connect, "postgresql", "0004")
    with psycopg.connect(pg_url) as conn:
        counts = dict(
            conn.execute(
                "SELECT id, access_count FROM memories WHERE id = ANY(%s)", ([m.id, other.id],)
            ).fetchall()
        )
    assert counts == {m.id: total + 1, other.id: 0}  # + the last get, flushed on close
    runner.upgrade(connect, "postgresql")
    assert runner.current(connect, "postgresql") == runner.head()


def test_concurrent_access_flushes_do_not_deadlock(pg_url: str) -> None:
    """Two processes' flushers counting the same memories at once (here: two engines, two
    threads). The counts are upserted in id order, so their row locks cannot cross."""
    import random
    import threading

    from engramdb.models import utcnow
    from engramdb.store.postgres import PostgresStore

    engines = [
        engramdb.connect(pg_url, embedder=HashEmbedder(16), settings=Settings()) for _ in range(2)
    ]
    try:
        made = engines[0].memories.add_many([{"content": f"m{i}"} for i in range(200)])
        ids = [m.id for m in made]
        errors: list[BaseException] = []

        def flush(engine: engramdb.Engram, seed: int) -> None:
            store = engine.engine.store
            assert isinstance(store, PostgresStore)
            rng = random.Random(seed)
            try:
                for _ in range(20):
                    order = ids[:]
                    rng.shuffle(order)  # callers hand counts over in any order
                    store.record_access("default", {i: 1 for i in order}, utcnow())
            except BaseException as exc:  # re-raised below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=flush, args=(e, n)) for n, e in enumerate(engines)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        counts = {m.id: m.access_count for m in engines[1].memories.list(limit=500).items}
        assert all(counts[i] >= 40 for i in ids)  # 2 x 20 flushes, plus the list's own reads
    finally:
        for e in engines:
            e.close()


def test_access_lookups_are_replanned_once_memory_access_outgrows_its_statistics(
    pg_url: str,
) -> None:
    """Migration 0007. A prepared lookup of memory_access planned while its statistics said it
    was empty reads the whole table; after the store's flush has grown the table, the store
    (as the application role, which may not ANALYZE it itself) has it analyzed, and the cached
    plan is made again through the primary key."""
    rows = [{"content": f"m{i}", "agent_id": "a"} for i in range(800)]
    # Stored as the owner: the embedding space's index is made on first use, by its owner.
    with engramdb.connect(pg_url, embedder=HashEmbedder(16), settings=Settings()) as setup:
        ids = [m.id for m in setup.memories.add_many(rows)]
    settings = Settings(app_role="engramdb_app")
    db = engramdb.connect(pg_url, embedder=HashEmbedder(16), settings=settings)
    try:
        with psycopg.connect(pg_url, autocommit=True) as owner:
            owner.execute("ANALYZE memory_access")  # empty: its statistics say no pages
            owner.execute("SET plan_cache_mode = force_generic_plan")
            owner.execute(
                "PREPARE probe(text, uuid) AS SELECT access_count FROM memory_access "
                "WHERE organization_id = $1 AND memory_id = $2"
            )

            def plan() -> str:
                # prepare=False: psycopg would otherwise prepare the EXPLAIN itself.
                explain = f"EXPLAIN EXECUTE probe('default', '{ids[0]}')"
                return str(owner.execute(explain, prepare=False).fetchone()[0])  # type: ignore[index]

            assert plan().startswith("Seq Scan")
            for memory_id in ids:
                db.memories.get(memory_id)
            db.flush()
            assert plan().startswith("Index Scan")
            pages, analyzed = owner.execute(
                "SELECT relpages, reltuples FROM pg_class WHERE relname = 'memory_access'"
            ).fetchone()  # type: ignore[misc]
            assert analyzed >= 800 and pages < 16  # analyzed, and small: asked again next flush
    finally:
        db.close()


def test_memory_access_is_analyzed_only_when_it_outgrows_small_statistics(pg_url: str) -> None:
    """engramdb_refresh_access_stats() (0007): nothing while the table is no bigger than its
    statistics say; ANALYZE once it has four times their pages; 'settled' (the store stops
    asking) once they say 16 pages or more."""
    with engramdb.connect(pg_url, embedder=HashEmbedder(16), settings=Settings()) as db:
        db.memories.add_many([{"content": f"m{i}", "agent_id": "a"} for i in range(3000)])
        store = db.engine.store  # type: ignore[attr-defined]
        with psycopg.connect(pg_url, autocommit=True) as owner:

            def stats() -> tuple[int, float]:
                row = owner.execute(
                    "SELECT relpages, reltuples FROM pg_class WHERE relname = 'memory_access'"
                ).fetchone()
                assert row is not None
                return int(row[0]), float(row[1])

            def grow(n: int) -> None:
                owner.execute(
                    "INSERT INTO memory_access (organization_id, memory_id, access_count) "
                    "SELECT m.organization_id, m.id, 1 FROM memories m WHERE NOT EXISTS "
                    "(SELECT 1 FROM memory_access x WHERE x.memory_id = m.id) LIMIT %s",
                    (n,),
                )

            def refresh() -> bool:
                row = owner.execute("SELECT engramdb_refresh_access_stats()").fetchone()
                assert row is not None
                return bool(row[0])

            assert refresh() is False and stats() == (0, -1)  # empty: nothing to analyze
            grow(50)  # one page: no bigger than 'at least one' the statistics are taken as
            assert refresh() is False and stats() == (0, -1)
            grow(450)  # about five pages: four times that
            assert refresh() is False and stats()[1] == 500  # analyzed, still small
            grow(100)  # six pages against five: not worth another ANALYZE
            assert refresh() is False and stats()[1] == 500
            grow(2400)  # 3,000 rows, about 27 pages
            assert refresh() is True and stats()[1] == 3000
            assert store._access_stats_settled is False
            store.record_access("default", {}, utcnow())  # nothing to count: no round trip
            assert store._access_stats_settled is False
            first = db.memories.list(limit=1).items[0]
            db.memories.get(first.id)
            db.flush()
            assert store._access_stats_settled is True


def test_a_role_that_may_not_refresh_access_statistics_still_counts_and_stops_asking(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Refreshing memory_access's statistics is advisory: without the grant the counts are
    still written, the refusal is logged once, and the store does not ask again."""
    with engramdb.connect(pg_url, embedder=HashEmbedder(16), settings=Settings()) as setup:
        m = setup.memories.add("counted", agent_id="a")
    with psycopg.connect(pg_url, autocommit=True) as owner:
        owner.execute(
            "REVOKE EXECUTE ON FUNCTION engramdb_refresh_access_stats() FROM engramdb_app"
        )
    db = engramdb.connect(
        pg_url, embedder=HashEmbedder(16), settings=Settings(app_role="engramdb_app")
    )
    try:
        with caplog.at_level("WARNING", logger="engramdb.store.postgres.search"):
            for _ in range(2):
                db.memories.get(m.id)
                db.flush()
        refusals = [r for r in caplog.records if "statistics of memory_access" in r.getMessage()]
        assert len(refusals) == 1 and "permission denied" in refusals[0].getMessage()
        assert db.engine.store._access_stats_settled is True  # type: ignore[attr-defined]
        assert db.memories.get(m.id).access_count == 2
    finally:
        db.close()


def test_several_embedding_spaces_coexist_each_with_its_own_index(pg_url: str) -> None:
    small = engramdb.connect(pg_url, embedder=HashEmbedder(16), settings=Settings())
    large = engramdb.connect(pg_url, embedder=HashEmbedder(48), settings=Settings())
    try:
        a = small.memories.add("coffee with oat milk", agent_id="a")
        b = large.memories.add("coffee with oat milk", agent_id="b")
        assert small.memories.search("coffee", mode="vector")[0].memory.id == a.id
        assert large.memories.search("coffee", mode="vector")[0].memory.id == b.id
        # each space only sees its own vectors
        assert {h.memory.id for h in small.memories.search("coffee", mode="vector")} == {a.id}
        with pytest.raises(engramdb.DimensionMismatch):
            small.memories.add("wrong space", embedding=[0.1] * 48)
    finally:
        small.close()
        large.close()
    with psycopg.connect(pg_url) as conn:
        names = {
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'memories' "
                "AND indexdef LIKE '%hnsw%'"
            ).fetchall()
        }
    assert {"memories_embedding_16_cosine_idx", "memories_embedding_48_cosine_idx"} <= names


def test_bad_database_url_is_a_configuration_error() -> None:
    with pytest.raises(engramdb.ConfigurationError):
        engramdb.connect("mysql://nope", embedder=HashEmbedder(8), settings=Settings())


def test_unknown_option_is_a_configuration_error() -> None:
    with pytest.raises(engramdb.ConfigurationError):
        engramdb.connect("sqlite://:memory:", embedder=HashEmbedder(8), colour="blue")


def test_settings_from_env() -> None:
    s = Settings.from_env(
        {"ENGRAMDB_DATABASE_URL": "sqlite:///x.db", "ENGRAMDB_HNSW_EF_SEARCH": "200",
         "ENGRAMDB_AUTO_MIGRATE": "false", "ENGRAMDB_DATA_DIR": "~/mem"}
    )  # fmt: skip
    assert s.database_url == "sqlite:///x.db"
    assert s.hnsw_ef_search == 200
    assert s.auto_migrate is False
    assert s.data_dir == Path("~/mem").expanduser()


def test_the_embedder_can_be_named_as_in_the_setting(tmp_path: Path) -> None:
    # connect(embedder="hash") is the documented form; the name used to be taken for an
    # Embedder object and fail at the first add.
    with engramdb.connect(
        f"sqlite:///{tmp_path / 'named.db'}", embedder="hash", embedding_dimensions=32
    ) as db:
        assert db.embedder.dimensions == 32
        assert db.embedder.model == HashEmbedder(32).model
        m = db.memories.add("named embedders work", agent_id="a")
        hits = db.memories.search("named embedders", agent_id="a", mode="vector")
        assert [h.memory.id for h in hits] == [m.id]
