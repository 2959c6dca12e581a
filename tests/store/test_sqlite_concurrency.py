"""SQLite concurrency: WAL, one writer at a time, no "database is locked", no lost writes."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

from engramdb import Settings, connect
from engramdb.embeddings.hashing import HashEmbedder

DIM = 16


def _open(path: Path):  # type: ignore[no-untyped-def]
    return connect(f"sqlite:///{path}", embedder=HashEmbedder(DIM), settings=Settings())


def _writer(path: str, tag: str, n: int) -> None:
    db = _open(Path(path))
    try:
        for i in range(n):
            db.memories.add(f"{tag} memory {i}", agent_id=tag)
        db.memories.add_many([{"content": f"{tag} batch {i}", "agent_id": tag} for i in range(n)])
    finally:
        db.close()


def test_database_is_in_wal_mode(tmp_path: Path) -> None:
    db = _open(tmp_path / "m.db")
    db.memories.add("x")
    db.close()
    with sqlite3.connect(tmp_path / "m.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_concurrent_writer_threads_lose_nothing(tmp_path: Path) -> None:
    db = _open(tmp_path / "m.db")
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(25):
                db.memories.add(f"thread {t} item {i}", agent_id=f"t{t}")
                db.memories.search(f"thread {t}", agent_id=f"t{t}", top_k=3)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(len(db.memories.list(agent_id=f"t{t}", limit=100).items) for t in range(6)) == 150
    db.close()


def test_two_processes_write_one_file(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    _open(path).close()  # migrated before the writers start
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), f"p{i}", 40)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    db = _open(path)
    for i in range(2):
        assert len(db.memories.list(agent_id=f"p{i}", limit=1000).items) == 80
    db.close()


def test_two_processes_migrate_a_new_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), f"m{i}", 3)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    db = _open(path)
    assert len(db.memories.list(limit=100).items) == 12
    db.close()


def test_reader_is_not_blocked_by_an_open_write(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    db = _open(path)
    m = db.memories.add("readable while another connection writes", agent_id="a")
    with sqlite3.connect(path, isolation_level=None) as other:
        other.execute("BEGIN IMMEDIATE")  # another process's writer holds the write lock
        other.execute("UPDATE memories SET content = 'changed, not committed'")
        assert db.memories.get(m.id).content == "readable while another connection writes"
        assert [h.memory.id for h in db.memories.search("readable", mode="text")] == [m.id]
        other.execute("ROLLBACK")
    db.close()


def test_other_process_vector_writes_reach_this_cache(tmp_path: Path) -> None:
    """The per-process vector cache follows inserts, updates and purges made elsewhere."""
    path = tmp_path / "m.db"
    dim = DIM
    a, b = _open(path), _open(path)  # two stores: two caches, as two processes would have
    axis = [[1.0 if j == i else 0.0 for j in range(dim)] for i in range(3)]
    first = a.memories.add("axis zero", embedding=axis[0], user_id="u")
    assert [h.memory.id for h in b.memories.search(embedding=axis[0], mode="vector")] == [first.id]
    second = a.memories.add("axis one", embedding=axis[1], user_id="u")
    hits = b.memories.search(embedding=axis[1], mode="vector", top_k=1)
    assert [h.memory.id for h in hits] == [second.id]
    a.memories.update(first.id, embedding=axis[2])
    hits = b.memories.search(embedding=axis[2], mode="vector", top_k=1)
    assert [h.memory.id for h in hits] == [first.id] and hits[0].score > 0.99
    a.memories.delete(second.id, purge=True)
    assert [h.memory.id for h in b.memories.search(embedding=axis[1], mode="vector")] == [first.id]
    a.close()
    b.close()
