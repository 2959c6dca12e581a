"""Bulk ingest stores exactly what was given, and a single add is one round trip.

add_many goes through binary COPY into a staging table and one INSERT ... SELECT; an import
loads the same way in one transaction (into an empty space: without the vector index, built at
the end). Both must keep every field as given: contents, float32 vectors bit for bit,
metadata, tags and times to the microsecond.
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from engramdb import Engram, Settings, connect
from engramdb import errors as engramdb_errors
from engramdb.embeddings.none import NoEmbedder
from engramdb.service.importer import import_records, jsonl_records
from engramdb.store.postgres import PostgresStore
from tests.conftest import TEST_DIMENSIONS, protocol_messages, protocol_trace


def _vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, TEST_DIMENSIONS)).astype(np.float32)
    # Values whose float32 bits are easy to lose on the way through text or float64.
    v[0, :4] = [np.float32(1e-38), np.float32(-0.0), np.float32(3.4e38), np.float32(1 / 3)]
    if n > 1:
        v[1, :2] = [np.nextafter(np.float32(1), np.float32(2)), np.float32(1e-45)]
    return v


def _items(n: int, seed: int = 1) -> list[dict[str, Any]]:
    vecs = _vectors(n, seed)
    base = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    items = []
    for i in range(n):
        items.append(
            {
                "content": f'memory {i}: ünïcode ✓ "quoted" \\ tab\there {"x" * (i % 7)}',
                "agent_id": f"agent-{i % 3}",
                "user_id": None if i % 4 == 0 else f"user-{i % 5}",
                "room_id": "room-1" if i % 2 else None,
                "kind": ("semantic", "episodic", "message")[i % 3],
                "tags": [f"t{i % 4}", "shared"] if i % 5 else [],
                "metadata": {"n": i, "nested": {"list": [1, 2.5, None, True], "s": "é"}},
                "importance": (i % 10) / 10,
                "created_at": base + timedelta(microseconds=i * 1001),
                "valid_from": base - timedelta(days=i),
                "expires_at": (base + timedelta(days=3650)).astimezone(
                    timezone(timedelta(hours=5))
                ),
                "embedding": vecs[i].tolist(),
            }
        )
    return items


def _check(db: Engram, stored: list[Any], items: list[dict[str, Any]]) -> None:
    assert len(stored) == len(items)
    for mem, item in zip(stored, items, strict=True):
        got = db.memories.get(mem.id, with_embedding=True)
        for name in ("content", "agent_id", "user_id", "room_id", "kind", "tags", "metadata"):
            assert getattr(got, name) == item[name], name
        assert got.importance == pytest.approx(item["importance"])
        for name in ("created_at", "valid_from", "expires_at"):
            assert getattr(got, name) == item[name], name
        want = np.asarray(item["embedding"], dtype=np.float32)
        assert got.embedding is not None
        assert np.asarray(got.embedding, dtype=np.float32).tobytes() == want.tobytes()


def test_numpy_vectors_are_written_as_pgvector_writes_them() -> None:
    """The store's own binary dumper for numpy arrays (store/postgres/vectors.py) writes the
    bytes pgvector's does, for float32 and for other dtypes, and refuses what it refuses."""
    from pgvector.psycopg.vector import VectorBinaryDumper

    from engramdb.store.postgres.vectors import _NumpyVectorBinaryDumper

    ours, theirs = _NumpyVectorBinaryDumper(np.ndarray), VectorBinaryDumper(np.ndarray)
    v = _vectors(2, 11)
    for value in (v[0], v[1], v[0].astype(np.float64), np.arange(5), v[0][::2]):
        assert bytes(ours.dump(value)) == bytes(theirs.dump(value))  # type: ignore[arg-type]
    for dumper in (ours, theirs):
        with pytest.raises(ValueError, match="ndim"):
            dumper.dump(v)


def _open(url: str, **settings: Any) -> Engram:
    return connect(url, embedder=NoEmbedder(TEST_DIMENSIONS), settings=Settings(**settings))


def test_add_many_stores_exactly_what_was_given(pg_url: str) -> None:
    items = _items(40)
    with _open(pg_url) as db:
        stored = db.memories.add_many(items)
        _check(db, stored, items)


def test_import_stores_exactly_what_was_given(pg_url: str) -> None:
    items = _items(40, seed=2)
    with _open(pg_url) as db:
        stats = import_records(db.memories, enumerate(items, start=1), batch_size=7)
        assert (stats.rows, stats.created, stats.duplicates) == (40, 40, 0)
        assert stats.index_rebuilt  # an empty space: loaded without the index, built after
        by_n = {m.metadata["n"]: m for m in db.memories.list(limit=100).items}
        _check(db, [by_n[i] for i in range(40)], items)
        # The rebuilt index is the registered one, and searches use it.
        with psycopg.connect(pg_url) as conn:
            (name,) = conn.execute("SELECT index_name FROM embedding_indexes").fetchone()  # type: ignore[misc]
            assert conn.execute("SELECT to_regclass(%s)", (name,)).fetchone() != (None,)
        q = items[5]["embedding"]
        hits = db.memories.search(embedding=q, mode="vector", top_k=1, exact=False)
        assert hits[0].memory.metadata["n"] == 5


def test_batches_keep_dedup_semantics(pg_url: str) -> None:
    with _open(pg_url) as db:
        first = db.memories.add("known fact", agent_id="a", embedding=_vectors(1, 3)[0].tolist())
        items = [
            {"content": "known fact", "agent_id": "a"},  # exists already
            {"content": "new fact", "agent_id": "a"},
            {"content": "new fact", "agent_id": "a"},  # duplicate within the batch
            {"content": "new fact", "agent_id": "b"},  # another scope: not a duplicate
            {"content": "repeat", "agent_id": "a", "is_unique": False},
            {"content": "repeat", "agent_id": "a", "is_unique": False},
        ]
        vecs = _vectors(len(items), 4)
        for item, v in zip(items, vecs, strict=True):
            item["embedding"] = v.tolist()
        out = db.memories.add_many(items)
        assert out[0].id == first.id
        assert out[1].id == out[2].id != out[3].id
        assert out[4].id != out[5].id
        # The batch's first occurrence is the one kept, with its own vector.
        got = db.memories.get(out[1].id, with_embedding=True)
        assert np.asarray(got.embedding, dtype=np.float32).tobytes() == vecs[1].tobytes()
        # The same rules through an import, in one transaction with the rows above.
        stats = import_records(db.memories, enumerate(items, start=1))
        assert (stats.rows, stats.created, stats.duplicates) == (6, 2, 4)
        assert not stats.index_rebuilt  # the space holds vectors: loaded through the index


def test_add_many_inserts_a_thousand_rows_a_statement(pg_url: str) -> None:
    """A large batch is inserted from staging 1,000 rows a statement (each within the
    statement timeout), in one transaction: a duplicate of a row an earlier statement inserted
    is skipped as within one statement, and results stay in input order."""
    vecs = _vectors(1005, 13)
    items: list[dict[str, Any]] = [
        {"content": f"fact {i}", "agent_id": "a", "embedding": vecs[i].tolist()}
        for i in range(1005)
    ]
    items[1002]["content"] = "fact 3"  # a duplicate of a row of the first statement
    for i in (1003, 1004):  # not deduplicated
        items[i].update(content="repeat", is_unique=False)
    with _open(pg_url, pool_min_size=1, pool_max_size=1) as db:
        store = db.engine.store
        assert isinstance(store, PostgresStore)
        out: list[Any] = []
        messages = protocol_messages(store, lambda: out.extend(db.memories.add_many(items)))
        inserts = [tag for side, kind, tag in messages if kind == "CommandComplete"
                   and tag.startswith('"INSERT')]  # fmt: skip
        assert inserts == ['"INSERT 0 1000"', '"INSERT 0 4"']
        assert out[1002].id == out[3].id
        assert out[1003].id != out[1004].id
        assert [m.content for m in out[:1002]] == [f"fact {i}" for i in range(1002)]
        assert len({m.id for m in out}) == 1004


def test_import_copies_into_memories_until_a_batch_has_a_duplicate(pg_url: str) -> None:
    """Without row-level security an import COPYs each batch straight into memories; a batch
    holding a duplicate (COPY has no ON CONFLICT) is rolled back to its savepoint and staged,
    and so is every later batch. Nothing is lost or doubled, and the first occurrence stays."""
    items = _items(12, seed=5)
    items[5] = {**items[0], "embedding": _vectors(1, 6)[0].tolist()}  # batch 2 repeats row 1
    with _open(pg_url) as db:
        stats = import_records(db.memories, enumerate(items, start=1), batch_size=4)
        assert (stats.rows, stats.created, stats.duplicates) == (12, 11, 1)
        assert stats.copied == 4  # the first batch; the second was staged, and so the third
        by_n = {m.metadata["n"]: m for m in db.memories.list(limit=100).items}
        assert sorted(by_n) == [n for n in range(12) if n != 5]
        kept = [items[i] for i in range(12) if i != 5]
        _check(db, [by_n[i] for i in range(12) if i != 5], kept)  # row 1 with its own vector
        # Scopes named only by a directly copied batch were registered (foreign keys hold).
        assert {a.id for a in db.agents.list().items} >= {"agent-0", "agent-1", "agent-2"}


def test_import_under_row_level_security_stages_every_batch(pg_url: str) -> None:
    """PostgreSQL refuses COPY FROM into a table whose row-level security applies to the
    session (the server's application role): such an import stages every batch."""
    from engramdb.server.state import DEFAULT_APP_ROLE

    with _open(pg_url) as owner:  # migrations and the embedding space, as the owner
        owner.engine.store.ensure_embedding_space(TEST_DIMENSIONS, "cosine")
    items = _items(6, seed=7)
    with _open(pg_url, app_role=DEFAULT_APP_ROLE) as db:
        stats = import_records(db.memories, enumerate(items, start=1), batch_size=4)
        assert (stats.rows, stats.created, stats.duplicates, stats.copied) == (6, 6, 0, 0)
        by_n = {m.metadata["n"]: m for m in db.memories.list(limit=100).items}
        _check(db, [by_n[i] for i in range(6)], items)


def test_an_owner_under_row_level_security_keeps_the_shared_index(pg_url: str) -> None:
    """A table owner that is not a superuser sees only its organization's rows, so it cannot
    tell a space with no vectors from one holding other tenants': importing a tenant's first
    vectors loads through the index instead of dropping and rebuilding the one they share."""
    from engramdb.server.state import DEFAULT_APP_ROLE

    role = f"engramdb_owner_{uuid.uuid4().hex[:8]}"
    vec = _vectors(3, 12)
    with _open(pg_url) as admin:
        admin.engine.store.ensure_embedding_space(TEST_DIMENSIONS, "cosine")
        for org in ("acme", "globex"):
            admin.engine.store.ensure_organization(org)
        acme = admin.for_organization("acme").memories.add("acme's", embedding=vec[0].tolist())
    with psycopg.connect(pg_url, autocommit=True) as conn:
        (owner,) = conn.execute("SELECT current_user").fetchone()  # type: ignore[misc]
        conn.execute(f'CREATE ROLE "{role}" NOLOGIN IN ROLE "{DEFAULT_APP_ROLE}"')
        conn.execute(f'ALTER TABLE memories OWNER TO "{role}"')
    try:
        with _open(pg_url, app_role=role, organization="globex") as db:
            records = [
                (i, {"content": f"globex {i}", "embedding": vec[i].tolist()}) for i in (1, 2)
            ]
            stats = import_records(db.memories, iter(records))
            assert (stats.rows, stats.created, stats.index_rebuilt) == (2, 2, False)
        with _open(pg_url) as admin:
            hits = admin.for_organization("acme").memories.search(
                embedding=vec[0].tolist(), mode="vector", top_k=1, exact=False
            )
            assert [h.memory.id for h in hits] == [acme.id]
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'REASSIGN OWNED BY "{role}" TO "{owner}"')
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def test_single_add_is_one_round_trip(pg_url: str) -> None:
    """add(): one INSERT (scopes registered, duplicate read back, all in that statement), one
    Sync, one ReadyForQuery; the tenant setting goes with it only when the connection's session
    has another (store/postgres/session.py), and here the warm-up set it."""
    with _open(pg_url, pool_min_size=1, pool_max_size=1) as db:
        store = db.engine.store
        assert isinstance(store, PostgresStore)
        vec = _vectors(3, 5)
        # Warm-up: the embedding space and the agent's configuration are known from here on.
        db.memories.add("warm up", agent_id="bot", user_id="u1", embedding=vec[0].tolist())
        added: list[Any] = []

        def two_adds() -> None:
            for v in vec[1:3]:
                added.append(db.memories.add(
                    "traced", agent_id="bot", user_id="u2", room_id="r", embedding=v.tolist()
                ))  # fmt: skip

        trace = protocol_trace(store, two_adds)
        assert added[1].id == added[0].id  # the duplicate came back from the same statement
        sent = [kind for side, kind in trace if side == "F"]
        received = [kind for side, kind in trace if side == "B"]
        # Two adds: each one Sync (one round trip) carrying one statement.
        assert sent.count("Sync") == 2, sent
        assert sent.count("Execute") == 2, sent
        assert received.count("ReadyForQuery") == 2, received
        assert "Query" not in sent  # no simple-protocol BEGIN/COMMIT round trips


def test_import_cli_end_to_end(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engramdb.cli.main import main

    monkeypatch.setenv("ENGRAMDB_EMBEDDER", "hash")
    monkeypatch.setenv("ENGRAMDB_EMBEDDING_DIMENSIONS", str(TEST_DIMENSIONS))
    import json

    vec = _vectors(1, 6)[0].tolist()
    good = tmp_path / "good.jsonl"
    good.write_text(
        "\n".join(
            [
                json.dumps({"content": "with a vector", "user_id": "alice", "embedding": vec}),
                "",  # blank lines are skipped
                json.dumps({"content": "embedded by the importer", "tags": ["x"]}),
                json.dumps({"content": "with a vector", "user_id": "alice"}),  # duplicate
            ]
        )
        + "\n"
    )
    assert main(["import", str(good), "--database-url", pg_url, "--quiet"]) == 0
    bad = tmp_path / "bad.jsonl"
    lines = [json.dumps({"content": f"line {i}"}) for i in range(1, 8)]
    lines[4] = '{"content": "broken"'  # line 5: invalid JSON
    bad.write_text("\n".join(lines) + "\n")
    assert main(["import", str(bad), "--database-url", pg_url, "--batch-size", "2"]) == 1
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(
        json.dumps({"content": "ok"}) + "\n" + json.dumps({"text": "no content"}) + "\n"
    )
    assert main(["import", str(wrong), "--database-url", pg_url]) == 1
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT content, embedding_dim FROM memories ORDER BY content"
        ).fetchall()
    # The good file's two new memories, and nothing of the bad files (their earlier lines and
    # batches included: one transaction per file).
    assert rows == [
        ("embedded by the importer", TEST_DIMENSIONS),
        ("with a vector", TEST_DIMENSIONS),
    ]
    with _open(pg_url) as db:
        [m] = db.memories.list(user_id="alice").items
        got = db.memories.get(m.id, with_embedding=True)
        assert (
            np.asarray(got.embedding, dtype=np.float32).tobytes()
            == np.asarray(vec, np.float32).tobytes()
        )
    assert uuid.UUID(str(m.id))


def test_import_cli_errors_name_the_line(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from engramdb.cli.main import main

    monkeypatch.setenv("ENGRAMDB_EMBEDDER", "hash")
    monkeypatch.setenv("ENGRAMDB_EMBEDDING_DIMENSIONS", str(TEST_DIMENSIONS))
    path = tmp_path / "f.jsonl"
    cases = {
        '{"content": "a"}\n{"content": "b"\n': "line 2: not valid JSON",
        '{"content": "a"}\n\n[1, 2]\n': "line 3: expected a JSON object",
        '{"content": "a"}\n{"content": ""}\n': "line 2: content must not be empty",
        '{"content": "a", "embedding": [1, 2]}\n': "line 1: embedding has 2 dimensions",
        '{"content": "a"}\n{"content": "\\ud800 lone"}\n{"content": "é"}\n{"content"}\n': "line 4: not valid JSON",
    }
    for text, message in cases.items():
        path.write_text(text)
        assert main(["import", str(path), "--database-url", pg_url]) == 1
        err = capsys.readouterr().err
        assert message in err, err
    path.write_bytes(b'{"content": "a"}\n{"content": "\xff"}\n')  # not UTF-8
    assert main(["import", str(path), "--database-url", pg_url]) == 1
    assert "line 2: not valid JSON" in capsys.readouterr().err
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM memories").fetchone() == (0,)


def test_json_lines_are_read_as_json_loads_reads_them() -> None:
    """The import's fast parser gives exactly what ``json.loads`` gives, line numbers and byte
    counts included, on what tends to differ between parsers."""
    lines = [
        b'{"content": "a", "embedding": [0.1, -2.5e-7, 1e300, 5e-324, -0.0, 3]}\r\n',
        b"   \n",
        b'{"content": "\\u00e9\\ud83d\\ude00 caf\xc3\xa9", "metadata": {"n": 1180591620717411303424}}\n',
        b'{"content": "lone \\udc00", "metadata": {"a": 1, "a": 2}}\n',
        b'{"content": "x", "embedding": [NaN, Infinity, -Infinity]}',
    ]  # fmt: skip
    sizes: list[int] = []
    got = list(jsonl_records(io.BytesIO(b"".join(lines)), sizes.append))
    want = [(n, json.loads(raw)) for n, raw in enumerate(lines, start=1) if raw.strip()]
    assert [n for n, _ in got] == [1, 3, 4, 5]
    assert repr(got) == repr(want)  # repr: NaN is not equal to itself
    assert sizes == [len(raw) for raw in lines]


def test_a_failed_single_add_leaves_the_connection_usable(pg_url: str) -> None:
    """The pipelined add fails as one implicit transaction: the error is the usual one, nothing
    is written, and the same pooled connection serves the next add."""
    from engramdb.errors import InvalidInput
    from engramdb.models import new_id
    from engramdb.service.engine import content_hash
    from engramdb.store.base import NewMemory

    with _open(pg_url, pool_min_size=1, pool_max_size=1) as db:
        store = db.engine.store
        bad = NewMemory(
            id=new_id(), kind="semantic", content="x", content_hash=content_hash("x"),
            agent_id="a", importance=2.0,  # outside the column's CHECK (0..1)
        )  # fmt: skip
        with pytest.raises(InvalidInput):
            store.insert_memories("default", [bad], actor=None)
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT count(*) FROM agents").fetchone() == (0,)
        good = db.memories.add("fine", agent_id="a", embedding=_vectors(1, 8)[0].tolist())
        assert db.memories.get(good.id).content == "fine"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["postgres", "sqlite-memory"])
def test_import_checks_related_ids_inside_its_transaction(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """related_ids are checked by the store in the import's transaction: the preparing thread
    never reads memories, which the fast path holds locked (and :memory: SQLite holds its one
    connection). A missing one fails the whole import with its line."""
    url = request.getfixturevalue("pg_url") if backend == "postgres" else "sqlite://:memory:"
    vec = _vectors(4, 9)
    with _open(url) as db:
        target = db.memories.add("the target", embedding=vec[0].tolist())
        good = [
            (1, {"content": "first", "embedding": vec[1].tolist()}),
            (
                2,
                {"content": "links", "related_ids": [str(target.id)], "embedding": vec[2].tolist()},
            ),
        ]
        # rebuild_index=True: the index is dropped and the table locked for the load.
        stats = import_records(db.memories, iter(good), rebuild_index=True)
        assert (stats.rows, stats.created) == (2, 2)
        [linked] = [m for m in db.memories.list().items if m.content == "links"]
        assert linked.related_ids == [target.id]
        assert [m.id for m in db.memories.related(linked.id)] == [target.id]
        missing = uuid.uuid4()
        bad = [
            (1, {"content": "fine", "embedding": vec[3].tolist()}),
            (
                7,
                {
                    "content": "dangling",
                    "related_ids": [str(missing)],
                    "embedding": vec[3].tolist(),
                },
            ),
        ]
        with pytest.raises(engramdb_errors.InvalidInput, match=f"line 7: related memory {missing}"):
            import_records(db.memories, iter(bad), batch_size=1)
        assert sorted(m.content for m in db.memories.list().items) == [
            "first", "links", "the target",
        ]  # fmt: skip
