"""Exact vector search in NumPy over the stored vectors, cached per process and kept in step.

Why not sqlite-vec (measured on 100k x 384 in ``benchmarks/sqlite_bench.py``, docs/sqlite.md):
its ``vec0`` table scanned 2-4 times slower than this cache unfiltered and did not get faster
for selective filters, and loading it needs ``apsw`` or ``pysqlite3`` (this Python's
``sqlite3`` cannot load extensions). The cache holds one matrix per (organization, model, dimensions), loaded
on the organization's first search and then refreshed incrementally: new rows are those with a
larger ``seq`` (AUTOINCREMENT, never reused), and every update or delete of a vector, cascades
included, is logged by triggers in ``memory_vector_changes``. Writers in other processes are
seen the same way.

Distances are pgvector's: cosine ``1 - cos``, l2 Euclidean, ip the negated inner product.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["VectorCache", "distances"]

F32 = npt.NDArray[np.float32]
_CHANGES_KEPT = 10_000  # change-log entries kept; a cache older than that reloads in full
#: A filter that matches at most this many rows is searched over those rows alone: gathering
#: them costs less than scanning every vector (a full scan of 100k x 384 takes ~15 ms).
PROBE_ROWS = 2_048

Key = tuple[str, str, int]  # organization, embedding model, dimensions
_COLS = "seq, organization_id, embedding_model, embedding_dim, embedding"


def distances(vectors: F32, norms: F32, query: F32, metric: str) -> npt.NDArray[Any]:
    """pgvector's distance of ``query`` to each row of ``vectors`` (float32 for speed)."""
    dots = vectors @ query
    if metric == "ip":
        return -dots
    qnorm = np.float32(np.linalg.norm(query))
    if metric == "l2":
        return np.sqrt(np.maximum(norms * norms + qnorm * qnorm - 2 * dots, 0))
    denom = norms * qnorm
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 1 - dots / denom
    # pgvector gives NaN for a zero vector; no similarity is the useful reading of that.
    out[denom == 0] = 1.0
    return out


def exact_distance(vector: F32, query: F32, metric: str) -> float:
    """The distance of one pair in float64, for the hits a search returns."""
    a = vector.astype(np.float64)
    b = query.astype(np.float64)
    if metric == "ip":
        return float(-(a @ b))
    if metric == "l2":
        return float(np.linalg.norm(a - b))
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 1.0 if denom == 0 else float(1 - (a @ b) / denom)


@dataclass
class Partition:
    """The vectors of one (organization, model, dimensions), with tombstones until compaction."""

    dim: int
    vectors: F32 = field(init=False)
    norms: F32 = field(init=False)
    seqs: npt.NDArray[np.int64] = field(init=False)
    alive: npt.NDArray[np.bool_] = field(init=False)
    n: int = 0
    dead: int = 0
    where: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._allocate(64)

    def _allocate(self, cap: int) -> None:
        self.vectors = np.zeros((cap, self.dim), dtype=np.float32)
        self.norms = np.zeros(cap, dtype=np.float32)
        self.seqs = np.zeros(cap, dtype=np.int64)
        self.alive = np.zeros(cap, dtype=bool)

    def add(self, seq: int, vector: F32) -> None:
        if self.n == len(self.seqs):
            vectors, norms, seqs, alive = self.vectors, self.norms, self.seqs, self.alive
            self._allocate(2 * self.n)
            self.vectors[: self.n] = vectors[: self.n]
            self.norms[: self.n] = norms[: self.n]
            self.seqs[: self.n] = seqs[: self.n]
            self.alive[: self.n] = alive[: self.n]
        i = self.n
        self.vectors[i] = vector
        self.norms[i] = np.linalg.norm(vector)
        self.seqs[i] = seq
        self.alive[i] = True
        self.where[seq] = i
        self.n += 1

    def remove(self, seq: int) -> None:
        i = self.where.pop(seq, None)
        if i is not None:
            self.alive[i] = False
            self.dead += 1
            if self.dead > 1024 and self.dead > self.n // 4:
                self._compact()

    def _compact(self) -> None:
        keep = np.flatnonzero(self.alive[: self.n])
        vectors, norms, seqs = self.vectors[keep], self.norms[keep], self.seqs[keep]
        self._allocate(max(64, 2 * len(keep)))
        self.n = len(keep)
        self.vectors[: self.n], self.norms[: self.n], self.seqs[: self.n] = vectors, norms, seqs
        self.alive[: self.n] = True
        self.dead = 0
        self.where = {int(s): i for i, s in enumerate(seqs)}


class VectorCache:
    """Per-process vectors of the organizations searched so far, refreshed before each search."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._parts: dict[Key, Partition] = {}
        self._home: dict[int, Key] = {}  # seq -> partition
        self._orgs: set[str] = set()
        self._mark: tuple[int, int] = (0, 0)  # (last memories.seq, last change version)

    def clear(self) -> None:
        self._parts.clear()
        self._home.clear()
        self._orgs.clear()
        self._mark = (0, 0)

    def _put(self, rows: Iterable[tuple[int, str, str, int, bytes]]) -> None:
        for seq, org, model, dim, blob in rows:
            if org not in self._orgs:
                continue
            key = (org, model, dim)
            part = self._parts.get(key)
            if part is None:
                part = self._parts[key] = Partition(dim)
            part.add(seq, np.frombuffer(blob, dtype="<f4"))
            self._home[seq] = key

    def _drop(self, seq: int) -> None:
        key = self._home.pop(seq, None)
        if key is not None:
            part = self._parts[key]
            part.remove(seq)
            if part.n == part.dead:  # nothing live (say, a purged organization): free it all
                del self._parts[key]

    def forget(self, org: str) -> None:
        """Drop an organization's vectors (it was purged); called with :attr:`lock` held.

        Searching it again loads whatever it holds then, as for an organization never seen.
        """
        for key in [k for k in self._parts if k[0] == org]:
            for seq in self._parts.pop(key).where:
                self._home.pop(seq, None)
        self._orgs.discard(org)

    def sync(self, conn: sqlite3.Connection, org: str) -> None:
        """Bring the cache up to ``conn``'s snapshot and load ``org`` if it is new.

        Called with :attr:`lock` held, in a fresh read transaction, so that successive syncs
        see ever newer snapshots and the cache never moves backwards.
        """
        marks = dict(
            conn.execute(
                "SELECT name, seq FROM sqlite_sequence "
                "WHERE name IN ('memories', 'memory_vector_changes')"
            ).fetchall()
        )
        mark = (int(marks.get("memories", 0)), int(marks.get("memory_vector_changes", 0)))
        if mark[1] > self._mark[1]:
            first = conn.execute("SELECT min(version) FROM memory_vector_changes").fetchone()[0]
            if first is None or first > self._mark[1] + 1:
                self.clear()  # the change log was trimmed past what this cache has seen
        if self._orgs and (mark[0] > self._mark[0] or mark[1] > self._mark[1]):
            orgs = json.dumps(sorted(self._orgs))
            changed = [
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT seq FROM memory_vector_changes WHERE version > ? AND seq <= ?",
                    (self._mark[1], self._mark[0]),
                )
            ]
            for seq in changed:
                self._drop(seq)
            if changed:
                self._put(
                    conn.execute(
                        f"SELECT {_COLS} FROM memories WHERE seq IN "
                        "(SELECT value FROM json_each(?)) AND embedding IS NOT NULL",
                        (json.dumps(changed),),
                    )
                )
            # The unary + keeps SQLite off the organization_id indexes: new rows are a short
            # rowid range, the organization's rows may be millions.
            self._put(
                conn.execute(
                    f"SELECT {_COLS} FROM memories WHERE seq > ? AND embedding IS NOT NULL "
                    "AND +organization_id IN (SELECT value FROM json_each(?))",
                    (self._mark[0], orgs),
                )
            )
        self._mark = (max(mark[0], self._mark[0]), max(mark[1], self._mark[1]))
        if org not in self._orgs:
            self._orgs.add(org)
            self._put(
                conn.execute(
                    f"SELECT {_COLS} FROM memories "
                    "WHERE organization_id = ? AND embedding IS NOT NULL",
                    (org,),
                )
            )

    def nearest(
        self,
        key: Key,
        query: F32,
        metric: str,
        limit: int,
        *,
        probe: Callable[[int], list[int] | None] | None,
        check: Callable[[list[int]], set[int]],
        filtered: Callable[[], set[int]],
    ) -> list[tuple[int, float]]:
        """The ``limit`` nearest vectors of the partition that pass the filter, exactly, as
        (seq, distance); called with :attr:`lock` held, inside the transaction of the last
        :meth:`sync` (so the filter callbacks see the rows the cache holds).

        ``probe(cap)`` returns the seqs that pass the filter, or ``None`` when more than ``cap``
        do: a selective filter is then searched over its own rows only, like PostgreSQL's exact
        plan, instead of scanning the whole partition. ``None`` for no probe (no filter).
        """
        part = self._parts.get(key)
        if part is None or part.n == part.dead:
            return []
        if probe is not None:
            seqs = probe(PROBE_ROWS)
            if seqs is not None:
                where = part.where
                idx = np.fromiter((where[s] for s in seqs if s in where), dtype=np.intp, count=-1)
                sub = Ranking(
                    distances(part.vectors[idx], part.norms[idx], query, metric),
                    part.seqs[idx],
                    part.vectors[idx],
                    query,
                    metric,
                    len(idx),
                )
                return sub.top(limit, lambda batch: set(batch), set)
        n = part.n
        dist = distances(part.vectors[:n], part.norms[:n], query, metric)
        dist[~part.alive[:n]] = np.inf
        ranking = Ranking(dist, part.seqs[:n], part.vectors[:n], query, metric, n - part.dead)
        return ranking.top(limit, check, filtered)


@dataclass
class Ranking:
    """One query's distances over a partition, from which filtered top-k lists are drawn."""

    dist: npt.NDArray[Any]
    seqs: npt.NDArray[np.int64]
    vectors: F32
    query: F32
    metric: str
    live: int

    def top(
        self,
        limit: int,
        check: Callable[[list[int]], set[int]],
        filtered: Callable[[], set[int]],
    ) -> list[tuple[int, float]]:
        """The ``limit`` nearest vectors that pass the filter, as (seq, distance), exactly.

        Candidates are checked against the filter in distance order (``check`` returns those of
        a list of seqs that pass), in growing rounds; when few pass, the filtered set is fetched
        once (``filtered``) and searched directly.
        """
        dist, seqs = self.dist, self.seqs
        n = len(seqs)
        found: list[int] = []
        checked, rounds = 0, 0
        size = max(4 * limit, 64)
        order: npt.NDArray[np.intp] = np.arange(0)
        while len(found) < limit and checked < self.live and rounds < 3:
            top = min(checked + size, self.live)
            idx = np.argpartition(dist, top - 1)[:top] if top < n else np.arange(n)
            order = idx[np.lexsort((seqs[idx], dist[idx]))]
            batch_idx = order[checked:top]
            batch = [int(s) for s in seqs[batch_idx]]
            passed = check(batch)
            found.extend(i for i, s in zip(batch_idx.tolist(), batch, strict=True) if s in passed)
            checked, size, rounds = top, size * 4, rounds + 1
        if len(found) < limit and checked < self.live:
            allowed = filtered()
            mask = np.isin(seqs, np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
            mask &= np.isfinite(dist)
            cand = np.flatnonzero(mask)
            found = cand[np.lexsort((seqs[cand], dist[cand]))].tolist()
        return [
            (int(seqs[i]), exact_distance(self.vectors[i], self.query, self.metric))
            for i in found[:limit]
        ]
