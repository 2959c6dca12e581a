"""SQLite migrations from the shared Alembic history, and the `:memory:` database."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

import engramdb
from engramdb import Settings, connect
from engramdb.embeddings.hashing import HashEmbedder
from engramdb.migrations import runner
from engramdb.store.sqlite import connect_raw

DIM = 16


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    url = f"sqlite:///{path}"

    def connect_db() -> sqlite3.Connection:
        return connect_raw(url)

    assert runner.current(connect_db, "sqlite") is None
    runner.upgrade(connect_db, "sqlite")
    assert runner.current(connect_db, "sqlite") == runner.head()
    assert {"memories", "memory_history", "memories_fts", "organizations"} <= _tables(path)
    runner.downgrade(connect_db, "sqlite", "base")
    assert runner.current(connect_db, "sqlite") is None
    assert _tables(path) <= {"alembic_version", "sqlite_sequence"}
    runner.upgrade(connect_db, "sqlite")
    db = connect(url, embedder=HashEmbedder(DIM), settings=Settings())
    m = db.memories.add("after a round trip", agent_id="a")
    assert db.memories.search("round trip", mode="text")[0].memory.id == m.id
    db.close()


def test_every_revision_steps_up_and_down(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    revs = [r.revision for r in runner.history()]
    for rev in revs:
        runner.upgrade(lambda: connect_raw(url), "sqlite", rev)
        assert runner.current(lambda: connect_raw(url), "sqlite") == rev
    for rev in reversed(["base", *revs[:-1]]):
        runner.downgrade(lambda: connect_raw(url), "sqlite", rev)
        assert runner.current(lambda: connect_raw(url), "sqlite") == (
            None if rev == "base" else rev
        )


def test_unmigrated_file_without_auto_migrate_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    with pytest.raises(engramdb.MigrationRequired):
        connect(url, embedder=HashEmbedder(DIM), settings=Settings(auto_migrate=False))
    connect(url, embedder=HashEmbedder(DIM), settings=Settings()).close()  # migrates
    connect(url, embedder=HashEmbedder(DIM), settings=Settings(auto_migrate=False)).close()


@pytest.mark.parametrize(
    "url",
    ["sqlite:relative.db", "sqlite://host/x.db", "sqlite:///x.db?mode=ro", "sqlite:///"],
)
def test_bad_sqlite_urls_are_refused(url: str) -> None:
    with pytest.raises(engramdb.ConfigurationError):
        connect(url, embedder=HashEmbedder(DIM), settings=Settings())


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(engramdb.ConfigurationError):
        connect(f"sqlite:///{tmp_path}/nope/m.db", embedder=HashEmbedder(DIM), settings=Settings())
    assert not (tmp_path / "nope").exists()


def test_memory_databases_are_private_and_vanish_on_close() -> None:
    a = connect("sqlite://:memory:", embedder=HashEmbedder(DIM), settings=Settings())
    b = connect("sqlite://:memory:", embedder=HashEmbedder(DIM), settings=Settings())
    a.memories.add("only in a", agent_id="x")
    assert b.memories.list().items == []
    a.close()
    with pytest.raises(engramdb.ConfigurationError):
        a.memories.list()
    b.close()


def test_memory_database_is_shared_by_threads() -> None:
    db = connect("sqlite://:memory:", embedder=HashEmbedder(DIM), settings=Settings())
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(20):
                m = db.memories.add(f"thread {t} note {i}", agent_id="shared")
                db.memories.get(m.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db.flush()  # the access recorder writes from its own thread, into the same database
    page = db.memories.list(agent_id="shared", limit=100)
    assert len(page.items) == 80 and all(m.access_count == 1 for m in page.items)
    db.close()


def test_db_command_migrates_a_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from engramdb.cli.main import main

    base = ["--json", "--database-url", f"sqlite:///{tmp_path / 'm.db'}", "db"]
    assert main([*base, "current"]) == 0
    assert json.loads(capsys.readouterr().out)["current"] is None
    assert main([*base, "upgrade"]) == 0
    assert json.loads(capsys.readouterr().out) == {"current": runner.head()}
    assert main([*base, "downgrade", "0001"]) == 0
    assert json.loads(capsys.readouterr().out) == {"current": "0001"}
    assert {"memories", "organizations"} <= _tables(tmp_path / "m.db")
    assert "api_keys" not in _tables(tmp_path / "m.db")
