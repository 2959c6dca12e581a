"""SQLite concurrency: WAL, one writer at a time, no "database is locked", no lost writes.

Each test makes the writers really meet: they start together (a barrier) and the test checks
afterwards that their write phases overlapped, or that a write had to wait for the lock, so
that none of them can pass by running its writers one after the other.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import engramdb
from engramdb import Engram, Settings, connect
from engramdb.embeddings.hashing import HashEmbedder

DIM = 16
WRITES = 60


def _open(path: Path, **settings: Any) -> Engram:
    return connect(f"sqlite:///{path}", embedder=HashEmbedder(DIM), settings=Settings(**settings))


def _write(db: Engram, tag: str, n: int) -> None:
    for i in range(n):
        db.memories.add(f"{tag} memory {i}", agent_id=tag)
    db.memories.add_many([{"content": f"{tag} batch {i}", "agent_id": tag} for i in range(n)])


def _writer(path: str, tag: str, n: int, barrier: Any, times: str) -> None:
    """A process of its own: wait for the other, connect (maybe migrating), write, report."""
    barrier.wait(timeout=60)
    start = time.time()
    db = _open(Path(path))
    try:
        _write(db, tag, n)
    finally:
        db.close()
    with open(times, "a") as f:
        f.write(f"{start} {time.time()}\n")


def _overlapped(times: Path) -> bool:
    spans = [tuple(map(float, line.split())) for line in times.read_text().splitlines()]
    assert len(spans) == 2
    return max(s for s, _ in spans) < min(e for _, e in spans)


def _run_processes(path: Path, tmp_path: Path, tags: list[str], n: int) -> Path:
    times = tmp_path / "times.txt"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(tags))
    procs = [
        ctx.Process(target=_writer, args=(str(path), tag, n, barrier, str(times))) for tag in tags
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * len(tags)
    return times


def test_database_is_in_wal_mode(tmp_path: Path) -> None:
    db = _open(tmp_path / "m.db")
    db.memories.add("x")
    db.close()
    with sqlite3.connect(tmp_path / "m.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_threads_sharing_one_store_lose_nothing(tmp_path: Path) -> None:
    db = _open(tmp_path / "m.db")
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait(timeout=30)
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


def test_threads_with_their_own_stores_contend_for_the_file(tmp_path: Path) -> None:
    """Separate stores share no Python lock: only SQLite's lock and busy timeout order them."""
    path = tmp_path / "m.db"
    _open(path).close()
    stores = [_open(path) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []
    spans: list[tuple[float, float]] = []

    def work(t: int) -> None:
        try:
            barrier.wait(timeout=30)
            start = time.monotonic()
            _write(stores[t], f"s{t}", WRITES)
            spans.append((start, time.monotonic()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert max(s for s, _ in spans) < min(e for _, e in spans)  # they did write at once
    for t, db in enumerate(stores):
        assert len(db.memories.list(agent_id=f"s{t}", limit=1000).items) == 2 * WRITES
        db.close()


def test_two_processes_write_one_file(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    _open(path).close()  # migrated before the writers start
    times = _run_processes(path, tmp_path, ["p0", "p1"], WRITES)
    assert _overlapped(times)
    db = _open(path)
    for i in range(2):
        assert len(db.memories.list(agent_id=f"p{i}", limit=1000).items) == 2 * WRITES
    db.close()


def test_two_processes_migrate_a_new_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    times = _run_processes(path, tmp_path, ["m0", "m1"], 3)
    assert _overlapped(times)
    db = _open(path)
    assert len(db.memories.list(limit=100).items) == 12
    db.close()


def test_a_writer_waits_for_another_process_lock(tmp_path: Path) -> None:
    """While another connection holds the write lock, a write waits (busy timeout), then
    succeeds; it is not refused with "database is locked"."""
    path = tmp_path / "m.db"
    db = _open(path)
    db.memories.add("first", agent_id="a")
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    released = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    released.start()
    started = time.monotonic()
    db.memories.add("second", agent_id="a")
    waited = time.monotonic() - started
    released.join()
    other.close()
    assert waited >= 0.4  # it did meet the lock
    assert len(db.memories.list(agent_id="a").items) == 2
    db.close()


def test_a_lock_held_past_the_busy_timeout_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    _open(path).close()
    db = _open(path, statement_timeout_ms=200)
    with sqlite3.connect(path, isolation_level=None) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(engramdb.Unavailable) as info:
            db.memories.add("blocked", agent_id="a")
        assert "locked" in str(info.value)
        other.execute("ROLLBACK")
    assert db.memories.list(agent_id="a").items == []  # nothing half-written
    db.close()


def test_reader_is_not_blocked_by_an_open_write(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    db = _open(path)
    m = db.memories.add("readable while another connection writes", agent_id="a")
    with sqlite3.connect(path, isolation_level=None) as other:
        other.execute("BEGIN IMMEDIATE")  # another process's writer holds the write lock
        other.execute("UPDATE memories SET content = 'changed, not committed'")
        started = time.monotonic()
        assert db.memories.get(m.id).content == "readable while another connection writes"
        assert [h.memory.id for h in db.memories.search("readable", mode="text")] == [m.id]
        assert [x.id for x in db.memories.list(agent_id="a").items] == [m.id]
        assert time.monotonic() - started < 1.0  # answered at once, not after a busy wait
        other.execute("ROLLBACK")
    db.close()


def test_readers_never_see_part_of_a_batch(tmp_path: Path) -> None:
    """Batches written by another store appear whole, to readers polling all along."""
    path = tmp_path / "m.db"
    writer, reader = _open(path), _open(path)
    counts: list[int] = []
    done = threading.Event()

    def write() -> None:
        for b in range(4):
            writer.memories.add_many(
                [{"content": f"bulk {b} {i}", "agent_id": "bulk"} for i in range(250)]
            )
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    while not done.is_set():
        counts.append(len(reader.memories.list(agent_id="bulk", limit=1000).items))
    thread.join()
    assert len(counts) > 1 and set(counts) <= {0, 250, 500, 750, 1000}
    assert len(reader.memories.list(agent_id="bulk", limit=1000).items) == 1000
    writer.close()
    reader.close()


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
