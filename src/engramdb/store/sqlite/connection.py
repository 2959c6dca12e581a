"""Connections to one SQLite database: URL parsing, pragmas, transactions and the write lock.

A file database gets a small pool of connections in WAL mode: readers run concurrently and are
never blocked by the writer; writers take a process-local lock, then ``BEGIN IMMEDIATE`` (which
waits up to the busy timeout for a writer in another process), so there is one writer at a time
and no "database is locked" error from lock upgrades. ``:memory:`` is one shared in-memory
database per store, reached through one connection that every thread takes in turn.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigurationError
from .errors import is_busy, translate_errors
from .jsonb import jsonb_contains

__all__ = ["MIN_SQLITE", "Database", "Target", "connect_raw", "parse_url"]

#: JSON ``->``/``->>`` operators and built-in JSON functions arrived in 3.38.
MIN_SQLITE = (3, 38, 0)
MEMORY = ":memory:"
_memory_names = itertools.count()


@dataclass(frozen=True)
class Target:
    """Where a database lives: a file path, or a named shared in-memory database."""

    path: str
    memory: bool

    def open(self, timeout_s: float) -> sqlite3.Connection:
        """A new configured connection in autocommit mode (transactions are explicit)."""
        check_sqlite()
        with translate_errors():
            conn = sqlite3.connect(
                self.path,
                timeout=timeout_s,
                isolation_level=None,
                check_same_thread=False,
                uri=self.memory,
            )
            conn.execute("PRAGMA foreign_keys = ON")
            if not self.memory:
                _enter_wal(conn, timeout_s)
                # In WAL mode NORMAL never corrupts; a power loss may drop the last commits.
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.create_function("engram_jsonb_contains", 2, jsonb_contains, deterministic=True)
        return conn


def _enter_wal(conn: sqlite3.Connection, timeout_s: float) -> None:
    """``PRAGMA journal_mode = WAL``, retried while another process holds the file.

    SQLite does not call the busy handler for every lock this pragma takes: while another process
    converts a new file to WAL or migrates it, the pragma can fail at once with "database is
    locked" although the connection's timeout has not passed. Retry it until that timeout.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def parse_url(url: str) -> Target:
    """``sqlite:///relative.db``, ``sqlite:////absolute.db``, or ``sqlite://:memory:``."""
    if not url.startswith("sqlite:"):
        raise ConfigurationError(f"not a SQLite URL: {url!r}")
    rest = url[len("sqlite:") :]
    if rest in ("", "//", "//:memory:", "///:memory:", ":memory:"):
        # Each store gets its own database; the name only lets its connections share it.
        name = f"engramdb-{os.getpid()}-{next(_memory_names)}-{uuid.uuid4().hex[:8]}"
        return Target(f"file:{name}?mode=memory&cache=shared", memory=True)
    if not rest.startswith("///") or len(rest) == 3 or "?" in rest:
        raise ConfigurationError(
            f"unsupported SQLite URL {url!r}: use sqlite:///relative/path.db, "
            "sqlite:////absolute/path.db or sqlite://:memory:"
        )
    path = Path(rest[3:]).expanduser()
    if not path.parent.exists():
        raise ConfigurationError(
            f"the directory of the SQLite database {str(path)!r} does not exist"
        )
    return Target(str(path), memory=False)


def check_sqlite() -> None:
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise ConfigurationError(
            f"engramdb's SQLite backend needs SQLite 3.38 or newer with FTS5; this Python has "
            f"{sqlite3.sqlite_version}: use a newer Python build, or PostgreSQL",
            details={"sqlite_version": sqlite3.sqlite_version},
        )


def connect_raw(url: str, timeout_s: float = 30.0) -> sqlite3.Connection:
    """A plain DB-API connection for the migration runner (autocommit; the runner begins).

    For ``:memory:`` this is a new, empty database: only a store's own connections share one.
    """
    return parse_url(url).open(timeout_s)


class Database:
    """The connections of one store; ``read()`` and ``write()`` give a transaction."""

    def __init__(self, target: Target, timeout_s: float) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._all: list[sqlite3.Connection] = []
        self._closed = False
        # :memory: keeps one connection: it also keeps the database alive while the store is open.
        self._shared: sqlite3.Connection | None = None
        self._shared_lock = threading.RLock()
        if target.memory:
            self._shared = target.open(timeout_s)

    def raw(self) -> sqlite3.Connection:
        """A new connection to the same database (migrations; the caller closes it)."""
        return self.target.open(self.timeout_s)

    def close(self) -> None:
        with self._pool_lock:
            self._closed = True
            conns, self._all, self._idle = self._all, [], []
        for conn in conns:
            conn.close()
        if self._shared is not None:
            with self._shared_lock:
                self._shared.close()
                self._shared = None

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        if self.target.memory:
            with self._shared_lock:
                if self._shared is None:
                    raise ConfigurationError("the store is closed")
                yield self._shared
            return
        with self._pool_lock:
            if self._closed:
                raise ConfigurationError("the store is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self.target.open(self.timeout_s)
            with self._pool_lock:
                self._all.append(conn)
        try:
            yield conn
        finally:
            with self._pool_lock:
                if self._closed:
                    conn.close()
                else:
                    self._idle.append(conn)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot for every statement inside."""
        with translate_errors(), self._connection() as conn:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, one at a time: rolled back on any error."""
        with translate_errors(), self._write_lock, self._connection() as conn:
            self._begin_immediate(conn)
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _begin_immediate(self, conn: sqlite3.Connection) -> None:
        # The busy handler already waits up to the timeout; this loop only covers the rare
        # SQLITE_BUSY that SQLite returns without calling it (e.g. during WAL recovery).
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
