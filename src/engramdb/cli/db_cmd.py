"""``engramdb db``: apply, roll back and inspect schema migrations."""

from __future__ import annotations

import argparse

from ..migrations import runner
from ..settings import Settings
from ..store import backend_for
from .main import emit


def _add(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = sub.add_parser("upgrade", help="migrate to the newest revision (or --to REV)")
    up.add_argument("--to", default="head")
    down = sub.add_parser("downgrade", help="roll back to REV ('base' removes everything)")
    down.add_argument("to", metavar="REV")
    sub.add_parser("current", help="the revision the database is at")
    sub.add_parser("history", help="all revisions, oldest first")


def _connector(settings: Settings) -> tuple[object, str]:
    """A raw-connection factory for the configured database, without opening a store pool."""
    backend = backend_for(settings.database_url)
    if backend == "sqlite":
        from ..store.sqlite import connect_raw as sqlite_connect

        sqlite_url = str(settings.database_url)
        return (lambda: sqlite_connect(sqlite_url)), backend
    import psycopg

    url = settings.database_url
    if url is None:
        from ..embedded import EmbeddedPostgres

        url = EmbeddedPostgres.shared(settings.data_dir).start()
    return (lambda: psycopg.connect(url)), backend


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "history":
        revs = runner.history()
        head = runner.head()
        lines = [f"{r.revision}  {r.doc}{'  (head)' if r.revision == head else ''}" for r in revs]
        emit(args, "\n".join(lines), [r.__dict__ for r in revs])
        return 0
    connect, backend = _connector(settings)
    if args.action == "current":
        rev = runner.current(connect, backend)  # type: ignore[arg-type]
        head = runner.head()
        state = "at head" if rev == head else f"behind head {head}: run `engramdb db upgrade`"
        emit(args, f"{rev or 'nothing (empty database)'} ({state})", {"current": rev, "head": head})
        return 0
    if args.action == "upgrade":
        runner.upgrade(connect, backend, args.to)  # type: ignore[arg-type]
    else:
        runner.downgrade(connect, backend, args.to)  # type: ignore[arg-type]
    rev = runner.current(connect, backend)  # type: ignore[arg-type]
    emit(args, f"database now at {rev or 'base (empty)'}", {"current": rev})
    return 0


COMMAND = (_add, _run)
