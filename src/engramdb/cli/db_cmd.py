"""``engramdb db``: apply, roll back and inspect schema migrations; rebuild the vector indexes."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from ..migrations import runner
from ..settings import Settings
from ..store import raw_connector
from .main import emit


def _add(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = sub.add_parser("upgrade", help="migrate to the newest revision (or --to REV)")
    up.add_argument("--to", default="head")
    down = sub.add_parser("downgrade", help="roll back to REV ('base' removes everything)")
    down.add_argument("to", metavar="REV")
    sub.add_parser("current", help="the revision the database is at")
    sub.add_parser("history", help="all revisions, oldest first")
    rebuild = sub.add_parser(
        "reindex",
        help="rebuild the HNSW index of each embedding space with the current index settings, "
        "without stopping searches or writes (PostgreSQL)",
    )
    rebuild.add_argument("--dimensions", type=int, help="only the space of this many dimensions")
    rebuild.add_argument("--metric", help="only the space of this metric (cosine, l2, ip)")
    rebuild.add_argument("--m", type=int, help="HNSW m (default: ENGRAMDB_HNSW_M, else 16)")
    rebuild.add_argument(
        "--ef-construction",
        type=int,
        help="HNSW ef_construction (default: ENGRAMDB_HNSW_EF_CONSTRUCTION, else 128)",
    )
    rebuild.add_argument(
        "--vector-type",
        choices=("vector", "halfvec"),
        help="what the index stores (default: ENGRAMDB_VECTOR_TYPE, else vector)",
    )
    rebuild.add_argument(
        "--maintenance-work-mem",
        metavar="SIZE",
        help="PostgreSQL's maintenance_work_mem for the builds, e.g. 2GB: a graph that does not "
        "fit builds far slower (default: the server's setting)",
    )


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "history":
        revs = runner.history()
        head = runner.head()
        lines = [f"{r.revision}  {r.doc}{'  (head)' if r.revision == head else ''}" for r in revs]
        emit(args, "\n".join(lines), [r.__dict__ for r in revs])
        return 0
    connect, backend = raw_connector(settings)
    if args.action == "reindex":
        return _reindex(args, settings, connect, backend)
    if args.action == "current":
        rev = runner.current(connect, backend)
        head = runner.head()
        state = "at head" if rev == head else f"behind head {head}: run `engramdb db upgrade`"
        emit(args, f"{rev or 'nothing (empty database)'} ({state})", {"current": rev, "head": head})
        return 0
    if args.action == "upgrade":
        runner.upgrade(connect, backend, args.to)
    else:
        runner.downgrade(connect, backend, args.to)
    rev = runner.current(connect, backend)
    emit(args, f"database now at {rev or 'base (empty)'}", {"current": rev})
    return 0


def _reindex(args: argparse.Namespace, settings: Settings, connect: Any, backend: str) -> int:
    if backend != "postgresql":
        emit(args, "SQLite has no vector index: nothing to rebuild", [])
        return 0
    from ..store.postgres.errors import translate_errors
    from ..store.postgres.spaces import rebuild_indexes

    def started(dimensions: int, metric: str, name: str) -> None:
        print(f"building {name} ({dimensions} dimensions, {metric})…", file=sys.stderr)

    with translate_errors(), connect() as conn:
        rebuilt = rebuild_indexes(
            conn,
            vector_type=args.vector_type or settings.vector_type,
            m=settings.hnsw_m if args.m is None else args.m,
            ef_construction=(
                settings.hnsw_ef_construction
                if args.ef_construction is None
                else args.ef_construction
            ),
            dimensions=args.dimensions,
            metric=args.metric,
            maintenance_work_mem=args.maintenance_work_mem,
            on_build=None if args.json else started,
        )
    lines = [
        f"rebuilt {r.index_name} ({r.dimensions} dimensions, {r.metric}; {r.vector_type}, "
        f"m {r.m}, ef_construction {r.ef_construction}) in {r.seconds:.1f}s"
        + ("" if r.previous in (None, r.index_name) else f", replacing {r.previous}")
        for r in rebuilt
    ]
    emit(
        args,
        "\n".join(lines) or "no embedding space yet: nothing to rebuild",
        [dataclasses.asdict(r) for r in rebuilt],
    )
    return 0


COMMAND = (_add, _run)
