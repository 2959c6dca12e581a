"""Bulk import of memory records (JSON Lines and the like) through the store's import path.

Records are validated, given vectors (embedded in batches where none is given) and handed to
the store batch by batch, all in one transaction: a bad record anywhere rolls the whole import
back, and the error names its line.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any

from ..errors import InvalidInput, NotFound
from ..models import MemoryInput
from ..models.common import loads_json
from ..store.base import ImportStats, NewMemory
from .facts import MemoryGraph
from .memories import Memories

__all__ = ["DEFAULT_BATCH_SIZE", "import_records", "jsonl_records"]

#: Rows per COPY batch (and per round of embedding): large enough that per-batch statements
#: cost nothing next to the rows, small enough that a batch's vectors stay a few MB.
DEFAULT_BATCH_SIZE = 1000


def jsonl_records(
    stream: IO[bytes], on_line: Callable[[int], None] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of a JSON Lines stream (what
    ``engramdb import`` reads); ``on_line`` gets each line's length in bytes, blank ones too.

    Lines are read by :func:`loads_json` (pydantic-core: at 384 dimensions ``json.loads`` was
    half of a 10,000-row import); ``NaN`` is read and then refused as invalid, as everywhere, and
    a broken line is reported with ``json.loads``'s message, which says where it breaks.
    """
    for number, raw in enumerate(stream, start=1):
        if on_line is not None:
            on_line(len(raw))
        text = raw.strip()
        if not text:
            continue
        try:
            record = loads_json(text)
        except ValueError as exc:  # UnicodeDecodeError included
            raise InvalidInput(
                f"line {number}: not valid JSON: {exc}", details={"line": number}
            ) from None
        if not isinstance(record, dict):
            raise InvalidInput(
                f"line {number}: expected a JSON object, got {type(record).__name__}",
                details={"line": number},
            )
        yield number, record


def import_records(
    memories: Memories,
    records: Iterable[tuple[int, Mapping[str, Any]]],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    rebuild_index: bool | None = None,
    on_progress: Callable[[ImportStats], None] | None = None,
) -> ImportStats:
    """Import ``(line number, record)`` pairs into ``memories``' organization.

    Each record has the fields of ``POST /v1/memories`` (``content`` required, ``embedding``
    optional). Everything is written in one transaction, or nothing is. Dedup as in
    :meth:`Memories.add_many`. ``rebuild_index``: see :meth:`Store.import_memories`.

    Records are parsed, validated and embedded in a second thread while the database loads the
    previous batch: the two take about as long as each other, and this machine has two cores.
    That thread reads nothing from the memories table (the import may hold it locked): the
    store checks ``related_ids`` inside its transaction, and a missing one is reported here
    with its line.
    """
    engine = memories._engine
    if not 1 <= batch_size <= engine.settings.limits.max_batch:
        raise InvalidInput(f"batch_size must be between 1 and {engine.settings.limits.max_batch}")
    engine.store.ensure_embedding_space(engine.dimensions, engine.settings.metric)
    graph = MemoryGraph(memories)
    links: list[tuple[uuid.UUID, uuid.UUID]] = []
    lines: dict[uuid.UUID, int] = {}  # rows naming related memories -> their line, for errors

    def rows(chunk: list[tuple[int, MemoryInput, Any]]) -> list[NewMemory]:
        prepared = memories._retain([item for _, item, _ in chunk])
        vectors: list[Any] = [vector for _, _, vector in chunk]
        todo = [i for i, vector in enumerate(vectors) if vector is None]
        step = engine.settings.embedding_batch_size
        for start in range(0, len(todo), step):
            part = todo[start : start + step]
            for i, vec in zip(
                part, engine.embed_documents([prepared[i].content for i in part]), strict=True
            ):
                vectors[i] = vec
        out = [memories._to_new(p, v) for p, v in zip(prepared, vectors, strict=True)]
        for (line, _, _), r in zip(chunk, out, strict=True):
            if r.related_ids:
                lines[r.id] = line
                links.extend((r.id, rid) for rid in r.related_ids)
        return out

    def batches() -> Iterator[list[NewMemory]]:
        chunk: list[tuple[int, MemoryInput, Any]] = []
        for line, record in records:
            # The vector is checked here, not with its batch: the list of floats then dies
            # young, where the garbage collector would walk a batch's lists again and again (a
            # tenth of the load).
            item, vector = memories._prepare_vector(record, label=f"line {line}")
            chunk.append((line, item, vector))
            if len(chunk) >= batch_size:
                yield rows(chunk)
                chunk = []
        if chunk:
            yield rows(chunk)

    try:
        with _Prefetch(batches()) as prefetched:
            stats = engine.store.import_memories(
                memories._org,
                prefetched,
                actor=memories._actor,
                dimensions=engine.dimensions,
                metric=engine.settings.metric,
                rebuild_index=rebuild_index,
                on_progress=on_progress,
            )
    except NotFound as exc:
        row = exc.details.get("memory")
        line = None if row is None else lines.get(uuid.UUID(str(row)))
        if line is None:
            raise
        raise InvalidInput(f"line {line}: {exc.message}", details=exc.details) from None
    for source, target in links:
        try:
            graph.link(source, target, "related")
        except NotFound:
            continue  # the record was a duplicate: no new memory to link from
    return stats


class _Prefetch:
    """Runs a generator in a worker thread, one item ahead of the consumer.

    An exception in the generator is raised to the consumer at the item where it happened;
    a consumer that stops early (the database failed) stops the worker.
    """

    _DONE = object()

    def __init__(self, source: Iterator[Any], depth: int = 1) -> None:
        self._source = source
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engramdb-import", daemon=True)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._put(("item", item)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(("error", exc))
            return
        self._put(("done", None))

    def __iter__(self) -> Iterator[Any]:
        while True:
            kind, value = self._queue.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value

    def __enter__(self) -> _Prefetch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
