"""``engramdb db``: apply, roll back and inspect schema migrations."""

from __future__ import annotations

import argparse

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


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "history":
        revs = runner.history()
        head = runner.head()
        lines = [f"{r.revision}  {r.doc}{'  (head)' if r.revision == head else ''}" for r in revs]
        emit(args, "\n".join(lines), [r.__dict__ for r in revs])
        return 0
    connect, backend = raw_connector(settings)
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


COMMAND = (_add, _run)
