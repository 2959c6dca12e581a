"""``engramdb import FILE.jsonl``: bulk-load memories, one JSON object per line.

Each line has the fields of ``POST /v1/memories`` (``content`` required; ``embedding`` optional,
computed in batches when absent). The whole file is imported in ONE transaction: a bad line
anywhere (invalid JSON, a missing or invalid field) stops the import with its line number and
nothing of the file is written. Importing into an empty embedding space loads the rows first and
builds the vector index once at the end, which is several times faster than indexing row by row;
readers of the memories table wait until the import commits in that case.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from typing import IO, Any

from ..api import connect
from ..errors import InvalidInput
from ..service.importer import DEFAULT_BATCH_SIZE, import_records, jsonl_records
from ..settings import Settings
from ..store.base import ImportStats
from .main import emit

HELP = "import memories from a JSON Lines file (one transaction)"


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="JSON Lines file, one memory object per line ('-' for stdin)")
    p.add_argument("--org", help="organization to import into (default: the configured one)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"rows per COPY batch and embedding round (default {DEFAULT_BATCH_SIZE})",
    )
    p.add_argument(
        "--database-url",
        default=argparse.SUPPRESS,
        help="postgresql://…, sqlite:///path.db (default: ENGRAMDB_DATABASE_URL, else embedded)",
    )
    index = p.add_mutually_exclusive_group()
    index.add_argument(
        "--rebuild-index",
        dest="rebuild_index",
        action="store_const",
        const=True,
        default=None,
        help="load without the vector index and rebuild it, even if the space has vectors "
        "(default: only into an empty space)",
    )
    index.add_argument(
        "--keep-index",
        dest="rebuild_index",
        action="store_const",
        const=False,
        help="always insert through the existing index (readers are never held up)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")


def _records(stream: IO[bytes], progress: _Progress) -> Iterator[tuple[int, dict[str, Any]]]:
    def read(size: int) -> None:
        progress.bytes_read += size

    return jsonl_records(stream, read)


class _Progress:
    """A one-line progress report on stderr, redrawn at most a few times a second."""

    def __init__(self, total_bytes: int | None, enabled: bool) -> None:
        self.total_bytes = total_bytes
        self.enabled = enabled
        self.bytes_read = 0
        self.started = time.monotonic()
        self._drawn = 0.0
        self._width = 0

    def __call__(self, stats: ImportStats) -> None:
        now = time.monotonic()
        final = stats.phase != "loading"
        if not self.enabled or (not final and now - self._drawn < 0.25):
            return
        self._drawn = now
        rate = stats.rows / max(now - self.started, 1e-9)
        if stats.phase == "indexing":
            line = f"building the vector index over {stats.rows:,} rows…"
        else:
            share = ""
            if self.total_bytes:
                share = f"{min(self.bytes_read / self.total_bytes, 1.0):6.1%}  "
            line = (
                f"{share}{stats.rows:,} rows ({stats.created:,} new, {stats.duplicates:,} "
                f"duplicates)  {rate:,.0f} rows/s"
            )
        pad = " " * max(self._width - len(line), 0)
        self._width = len(line)
        sys.stderr.write(f"\r{line}{pad}")
        if stats.phase == "done":
            sys.stderr.write("\n")
        sys.stderr.flush()


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if getattr(args, "database_url", None):
        settings = settings.with_(database_url=args.database_url)
    if args.org:
        settings = settings.with_(organization=args.org)
    if args.file == "-":
        stream: IO[bytes] = sys.stdin.buffer
        total = None
    else:
        try:
            stream = open(args.file, "rb")  # noqa: SIM115 - closed below, after the import
        except OSError as exc:
            raise InvalidInput(f"cannot read {args.file}: {exc.strerror}") from None
        total = os.fstat(stream.fileno()).st_size
    progress = _Progress(total, enabled=not args.quiet and sys.stderr.isatty())
    started = time.monotonic()
    try:
        with connect(settings=settings) as db:
            stats = import_records(
                db.memories,
                _records(stream, progress),
                batch_size=args.batch_size,
                rebuild_index=args.rebuild_index,
                on_progress=progress,
            )
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    seconds = time.monotonic() - started
    result = {
        "rows": stats.rows,
        "created": stats.created,
        "copied": stats.copied,
        "duplicates": stats.duplicates,
        "index_rebuilt": stats.index_rebuilt,
        "seconds": round(seconds, 3),
        "rows_per_second": round(stats.rows / seconds, 1) if seconds > 0 else None,
    }
    emit(
        args,
        f"imported {stats.rows:,} rows: {stats.created:,} new, {stats.duplicates:,} duplicates "
        f"({seconds:.1f}s{', vector index rebuilt' if stats.index_rebuilt else ''})",
        result,
    )
    return 0


COMMAND = (_add, _run)
