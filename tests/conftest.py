"""Test fixtures: real databases only — one embedded PostgreSQL per session, a fresh database per
test cloned from a migrated template, and SQLite files in tmp_path."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import pq

from engramdb import Engram, Settings, connect
from engramdb.cli.main import main as cli_main
from engramdb.embedded import EmbeddedPostgres
from engramdb.embeddings.hashing import HashEmbedder
from engramdb.store.postgres import PostgresStore

TEMPLATE = "engramdb_template"
TEST_DIMENSIONS = 64
_counter = itertools.count()

#: The backends the contract suite runs on; a backend's missing capabilities are declared in
#: engramdb.store.<backend>, never here.
BACKENDS = ["postgres", "sqlite", "sqlite-memory", "http"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    data_dir = Path(tempfile.mkdtemp(prefix="engramdb-test-"))
    os.chmod(data_dir, 0o755)
    server = EmbeddedPostgres.shared(data_dir)
    server.start()
    yield server
    server.release()


def _url(admin_url: str, database: str) -> str:
    return admin_url.replace("/postgres?", f"/{database}?", 1)


@pytest.fixture(scope="session")
def pg_template(pg_server: EmbeddedPostgres) -> str:
    """A database migrated to head, with the test embedding space indexed, to clone per test."""
    admin = pg_server.admin_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    url = _url(admin, TEMPLATE)
    store = PostgresStore(url, Settings(database_url=url)).open(migrate=True)
    store.ensure_embedding_space(TEST_DIMENSIONS, "cosine")
    store.close()
    return url


@pytest.fixture
def pg_url(pg_server: EmbeddedPostgres, pg_template: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    admin = pg_server.admin_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield _url(admin, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


#: ``run("keys", "list")`` → (exit status, stdout, stderr) of the command line.
CliRun = Callable[..., tuple[int, str, str]]


def cli_runner(url: str, capsys: pytest.CaptureFixture[str]) -> CliRun:
    """The command line run in process on the database at ``url``, its output captured."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = cli_main(["--database-url", url, *args])
        out, err = capsys.readouterr()
        return status, out, err

    return run


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder(TEST_DIMENSIONS)


def open_backend(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, **options: object
) -> Engram:
    embedder = HashEmbedder(TEST_DIMENSIONS)
    if backend == "postgres":
        url = request.getfixturevalue("pg_url")
        return connect(url, embedder=embedder, settings=Settings(), **options)
    if backend == "sqlite":
        return connect(
            f"sqlite:///{tmp_path / 'memories.db'}",
            embedder=embedder,
            settings=Settings(),
            **options,
        )
    if backend == "sqlite-memory":
        return connect("sqlite://:memory:", embedder=embedder, settings=Settings(), **options)
    if backend == "http":
        # The real app, served by uvicorn on a random local port, as the application role
        # (row-level security in force); the client holds an operator (home admin) key.
        from tests.server.live import start_http_backend

        server, key = start_http_backend(request.getfixturevalue("pg_url"), **options)
        request.addfinalizer(server.stop)
        return connect(server.url, api_key=key)
    raise AssertionError(f"unknown backend {backend}")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engram]:
    """An engramdb connection on each backend of the contract suite."""
    conn = open_backend(backend, request, tmp_path)
    yield conn
    conn.close()


def protocol_trace(store: PostgresStore, run: Callable[[], object]) -> list[tuple[str, str]]:
    """The protocol messages exchanged while ``run()`` runs on a store whose pool holds ONE
    connection: (``"F"`` sent / ``"B"`` received, message type), in order."""
    return [(side, kind) for side, kind, _ in protocol_messages(store, run)]


def protocol_messages(
    store: PostgresStore, run: Callable[[], object]
) -> list[tuple[str, str, str]]:
    """As :func:`protocol_trace`, with each message's contents as libpq's trace writes them
    (``CommandComplete``'s is the server's command tag, such as ``"INSERT 0 1000"``)."""
    fd, name = tempfile.mkstemp(prefix="engramdb-trace-")
    try:
        with store.pool.connection() as conn:
            conn.pgconn.trace(fd)
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            run()
        finally:
            with store.pool.connection() as conn:
                conn.pgconn.untrace()
        text = Path(name).read_text()
    finally:
        os.close(fd)
        os.unlink(name)
    return [
        (f[0], f[2], f[3].strip() if len(f) > 3 else "")
        for f in (line.split("\t") for line in text.splitlines())
        if len(f) > 2
    ]
