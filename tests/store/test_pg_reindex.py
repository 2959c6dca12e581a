"""``engramdb db reindex``: each space's HNSW index rebuilt with other parameters while the store
stays open, the registry naming a usable index throughout (store/postgres/spaces.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from engramdb import Engram, Settings, connect
from engramdb.cli.main import main
from engramdb.embeddings.hashing import HashEmbedder
from tests.conftest import TEST_DIMENSIONS, CliRun, cli_runner

INDEX = f"memories_embedding_{TEST_DIMENSIONS}_cosine_idx"
HALFVEC_INDEX = f"memories_embedding_{TEST_DIMENSIONS}_cosine_halfvec_idx"

Run = CliRun


@pytest.fixture
def db(pg_url: str) -> Iterator[Engram]:
    engram = connect(pg_url, embedder=HashEmbedder(TEST_DIMENSIONS), settings=Settings())
    for i in range(40):
        engram.memories.add(f"memory {i} about topic {i % 5}", user_id=f"u{i % 4}")
    yield engram
    engram.close()


@pytest.fixture
def run(pg_url: str, capsys: pytest.CaptureFixture[str]) -> Run:
    return cli_runner(pg_url, capsys)


def _hnsw_indexes(url: str) -> dict[str, tuple[bool, list[str]]]:
    """HNSW indexes on memories: name -> (valid, storage options)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname, i.indisvalid, coalesce(c.reloptions, '{}') FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
            "WHERE i.indrelid = 'memories'::regclass AND a.amname = 'hnsw'"
        ).fetchall()
    return {name: (valid, sorted(options)) for name, valid, options in rows}


def _registered(url: str) -> list[tuple[int, str, str]]:
    with psycopg.connect(url) as conn:
        return [
            (int(d), str(m), str(n))
            for d, m, n in conn.execute(
                "SELECT dimensions, metric, index_name FROM embedding_indexes ORDER BY 1, 2"
            )
        ]


def _ids(db: Engram, text: str) -> list[str]:
    hits = db.memories.search(text, mode="vector", top_k=5, exact=False)
    return [str(h.memory.id) for h in hits]


def test_reindex_rebuilds_with_new_parameters_while_the_store_is_open(
    db: Engram, run: Run, pg_url: str
) -> None:
    before = _ids(db, "topic 3")
    assert _hnsw_indexes(pg_url) == {INDEX: (True, ["ef_construction=128", "m=16"])}

    status, out, err = run("db", "reindex", "--m", "8", "--ef-construction", "40")
    assert status == 0, err
    assert f"rebuilt {INDEX} ({TEST_DIMENSIONS} dimensions, cosine; vector, m 8" in out
    assert f"building {INDEX}" in err
    assert _hnsw_indexes(pg_url) == {INDEX: (True, ["ef_construction=40", "m=8"])}
    assert _registered(pg_url) == [(TEST_DIMENSIONS, "cosine", INDEX)]
    # The open store searches through the new graph, as a new one does.
    assert _ids(db, "topic 3") == before
    with connect(pg_url, embedder=HashEmbedder(TEST_DIMENSIONS), settings=Settings()) as fresh:
        assert _ids(fresh, "topic 3") == before


def test_reindex_json_and_the_settings_as_defaults(
    db: Engram, run: Run, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENGRAMDB_HNSW_M", "12")
    status, out, err = run(
        "--json", "db", "reindex", "--dimensions", str(TEST_DIMENSIONS),
        "--maintenance-work-mem", "128MB",
    )  # fmt: skip
    assert status == 0, err
    [entry] = json.loads(out)
    assert entry["index_name"] == INDEX and entry["previous"] == INDEX
    assert (entry["m"], entry["ef_construction"], entry["vector_type"]) == (12, 128, "vector")
    assert entry["seconds"] >= 0 and err == ""  # no progress lines with --json
    assert _hnsw_indexes(pg_url) == {INDEX: (True, ["ef_construction=128", "m=12"])}


def test_reindex_changes_the_stored_type(db: Engram, run: Run, pg_url: str) -> None:
    before = _ids(db, "topic 1")
    status, out, err = run("db", "reindex", "--vector-type", "halfvec")
    assert status == 0, err
    assert f"rebuilt {HALFVEC_INDEX}" in out and f"replacing {INDEX}" in out
    assert set(_hnsw_indexes(pg_url)) == {HALFVEC_INDEX}
    assert _registered(pg_url) == [(TEST_DIMENSIONS, "cosine", HALFVEC_INDEX)]
    # A store opened afterwards reads the type from the index and walks the halfvec graph.
    with connect(pg_url, embedder=HashEmbedder(TEST_DIMENSIONS), settings=Settings()) as fresh:
        store = fresh.engine.store
        assert store._lookup_index(TEST_DIMENSIONS, "cosine") == "halfvec"  # type: ignore[attr-defined]
        after = _ids(fresh, "topic 1")
        # Half precision may swap near-ties: the same best hit, mostly the same five.
        assert after[0] == before[0] and len(set(after) & set(before)) >= 4
        fresh.memories.add("written after the rebuild", user_id="u9")
        [hit] = fresh.memories.search("written after the rebuild", mode="vector", top_k=1)
        assert hit.memory.content == "written after the rebuild"


def test_a_bad_rebuild_leaves_the_index_in_use_untouched(db: Engram, run: Run, pg_url: str) -> None:
    indexes = _hnsw_indexes(pg_url)
    status, _out, err = run("--json", "db", "reindex", "--m", "500")
    assert status == 1
    error = json.loads(err)["error"]
    assert error["code"] == "invalid_input" and "500" in error["message"]
    assert _hnsw_indexes(pg_url) == indexes  # nothing half built left behind
    assert _registered(pg_url) == [(TEST_DIMENSIONS, "cosine", INDEX)]

    status, _out, err = run("--json", "db", "reindex", "--maintenance-work-mem", "plenty")
    assert status == 1 and json.loads(err)["error"]["code"] == "invalid_input"
    status, _out, err = run("--json", "db", "reindex", "--dimensions", "999")
    assert status == 1 and json.loads(err)["error"]["code"] == "not_found"
    status, _out, err = run("--json", "db", "reindex", "--metric", "hamming")
    assert status == 1 and json.loads(err)["error"]["code"] == "invalid_input"
    assert _hnsw_indexes(pg_url) == indexes


def test_reindex_finishes_what_an_interrupted_one_left(db: Engram, run: Run, pg_url: str) -> None:
    # Interrupted after its new index was registered, before the old one was dropped.
    leftover = INDEX + "_rebuild"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            f"CREATE INDEX {leftover} ON memories USING hnsw ((embedding::vector"
            f"({TEST_DIMENSIONS})) vector_cosine_ops) WITH (m = 4, ef_construction = 16) "
            f"WHERE embedding_dim = {TEST_DIMENSIONS}"
        )
        conn.execute("UPDATE embedding_indexes SET index_name = %s", (leftover,))
    status, _out, err = run("db", "reindex")
    assert status == 0, err
    assert _hnsw_indexes(pg_url) == {INDEX: (True, ["ef_construction=128", "m=16"])}
    assert _registered(pg_url) == [(TEST_DIMENSIONS, "cosine", INDEX)]


def test_one_rebuild_at_a_time(db: Engram, run: Run, pg_url: str) -> None:
    with psycopg.connect(pg_url) as other:
        other.execute("SELECT pg_advisory_lock(hashtext('engramdb_rebuild_indexes'))")
        status, _out, err = run("--json", "db", "reindex")
        assert status == 1 and json.loads(err)["error"]["code"] == "conflict"
    status, _out, err = run("db", "reindex")
    assert status == 0, err


def test_reindex_on_sqlite_has_nothing_to_rebuild(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    with connect(url, embedder=HashEmbedder(TEST_DIMENSIONS), settings=Settings()) as db:
        db.memories.add("kept as it is")
    assert main(["--database-url", url, "db", "reindex"]) == 0
    assert "nothing to rebuild" in capsys.readouterr().out
