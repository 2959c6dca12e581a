"""Timing helpers shared by all suites: a timer, latency percentiles, a query-loop runner.

Suites should use :func:`run_queries` (or :func:`queries_in_turns`, for several systems at the
same moments) for search measurements, so that every system under test is timed the same way: sequential queries on one warm connection, wall-clock time around the
whole request (send, execute, fetch), a few untimed warm-up queries first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .workload import QuerySet, Workload


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __init__(self) -> None:
        self.start = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


@dataclass(frozen=True)
class LatencyStats:
    """Latency percentiles in milliseconds, plus throughput of the sequential loop."""

    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    qps: float

    @classmethod
    def from_seconds(cls, samples: Sequence[float]) -> LatencyStats:
        if not samples:
            return cls(0, *(float("nan"),) * 5, 0.0)
        ms = np.asarray(samples, dtype=np.float64) * 1000.0
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        total = float(ms.sum()) / 1000.0
        return cls(
            count=len(ms),
            p50_ms=float(p50),
            p95_ms=float(p95),
            p99_ms=float(p99),
            mean_ms=float(ms.mean()),
            max_ms=float(ms.max()),
            qps=len(ms) / total if total > 0 else float("inf"),
        )

    def as_metrics(self) -> dict[str, float]:
        return {
            "queries": float(self.count),
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "mean_ms": self.mean_ms,
            "max_ms": self.max_ms,
            "qps": self.qps,
        }


@dataclass(frozen=True)
class SearchResult:
    """Latencies and recall of one query set against one system/plan."""

    latency: LatencyStats
    recall: float  # mean recall@k over the queries
    recall_min: float
    #: Per-query recall, in query order (to find the queries a system gets wrong).
    recalls: tuple[float, ...] = ()

    def as_metrics(self) -> dict[str, float]:
        return {**self.latency.as_metrics(), "recall": self.recall, "recall_min": self.recall_min}

    def worst(self, count: int = 5) -> list[tuple[int, float]]:
        """Up to ``count`` (query index, recall) with recall below 1, worst first."""
        order = sorted(range(len(self.recalls)), key=lambda i: (self.recalls[i], i))
        return [(i, self.recalls[i]) for i in order[:count] if self.recalls[i] < 1.0]


def run_queries(
    search: Callable[[int], Sequence[int]],
    workload: Workload,
    qs: QuerySet,
    *,
    warmup: int = 10,
    limit: int | None = None,
) -> SearchResult:
    """Time ``search(i)`` for each query ``i`` of ``qs`` and score it against the ground truth.

    ``search(i)`` must run query ``i`` (``qs.vectors[i]``, filtered on ``qs.column =
    qs.values[i]`` if any) and return the *workload row indices* of the hits, best first.
    Warm-up queries reuse the first queries of the set and are not timed nor scored.
    """
    n = len(qs) if limit is None else min(limit, len(qs))
    for i in range(min(warmup, n)):
        search(i)
    samples: list[float] = []
    recalls: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        rows = search(i)
        samples.append(time.perf_counter() - t0)
        recalls.append(workload.recall(qs, i, rows))
    return search_result(samples, recalls)


def search_result(samples: Sequence[float], recalls: Sequence[float]) -> SearchResult:
    """Latencies (seconds) and recalls of the same queries, in query order."""
    return SearchResult(
        latency=LatencyStats.from_seconds(samples),
        recall=float(np.mean(recalls)) if recalls else float("nan"),
        recall_min=float(np.min(recalls)) if recalls else float("nan"),
        recalls=tuple(recalls),
    )


def queries_in_turns(
    searches: dict[str, Callable[[int], Sequence[int]]],
    workload: Workload,
    qs: QuerySet,
    *,
    block: int,
    warmup: int = 10,
    limit: int | None = None,
) -> dict[str, SearchResult]:
    """:func:`run_queries` for several searchers of the same queries, taking turns: queries
    ``block`` at a time, each searcher running the block in turn, the first of each turn
    rotating. All see the machine of the same moments, so their ratios do not carry drift
    between measurements taken minutes apart (on this machine, several tenths of a millisecond
    on a search of one or two). ``limit``: the first that many queries only."""
    n = len(qs) if limit is None else min(limit, len(qs))
    for search in searches.values():
        for i in range(min(warmup, n)):
            search(i)
    names = list(searches)
    samples: dict[str, list[float]] = {name: [] for name in names}
    recalls: dict[str, list[float]] = {name: [] for name in names}
    for turn, start in enumerate(range(0, n, block)):
        shift = turn % len(names)
        for name in names[shift:] + names[:shift]:
            search = searches[name]
            for i in range(start, min(start + block, n)):
                t0 = time.perf_counter()
                rows = search(i)
                samples[name].append(time.perf_counter() - t0)
                recalls[name].append(workload.recall(qs, i, rows))
    return {name: search_result(samples[name], recalls[name]) for name in names}


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def round_floats(value: Any, digits: int = 6) -> Any:
    """Round floats recursively (JSON results stay readable and diff-able)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: round_floats(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [round_floats(v, digits) for v in value]
    return value
