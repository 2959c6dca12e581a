"""The suite registry, the per-suite context, and the measurement record.

A *suite* is a function decorated with :func:`bench`; it receives a :class:`Context` (the shared
workload, a fresh database on the shared server, the run's sizes) and records
:class:`Measurement` objects. A measurement may name a *baseline* measurement recorded in the
same run; the report then shows their ratio. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg

from .measure import LatencyStats, SearchResult, rate
from .server import PgServer
from .workload import Workload, WorkloadSpec, generate

#: Modules that define suites; importing them registers their ``@bench`` functions.
#: Add yours here. A module that fails to import is reported as skipped, not fatal.
SUITE_MODULES: tuple[str, ...] = (
    "benchmarks.baseline",
    "benchmarks.engramdb_bench",
    "benchmarks.sqlite_bench",
    "benchmarks.http_bench",
)

Kind = Literal["throughput", "latency", "duration"]

#: The metric that ratios, and the first column of the tables, are about.
PRIMARY_METRIC: dict[str, str] = {
    "throughput": "rows_per_s",
    "latency": "p50_ms",
    "duration": "seconds",
}


@dataclass
class RunConfig:
    """Sizes and knobs of one run (from the command line)."""

    n: int = 100_000
    dim: int = 384
    tenants: int = 100
    seed: int = 42
    quick: bool = False
    k: int = 10
    queries: int = 1000  # unfiltered search queries
    filtered_queries: int = 300  # per filter bucket and plan
    exact_queries: int = 50  # unfiltered exact scans (slow at large n)
    warmup: int = 10
    copy_indexed_rows: int = 10_000  # COPY into the already indexed table
    insert_rows: int = 2_000  # one INSERT + commit per row
    executemany_rows: int = 5_000  # one transaction of INSERTs
    ef_search: int = 40
    tune_server: bool = True
    #: HNSW ``m`` of every graph the run builds, raw and engramdb alike (None: engramdb's
    #: default). A denser graph is what docs/embeddings.md advises for a space of a million.
    hnsw_m: int | None = None

    @property
    def library_settings(self) -> dict[str, Any]:
        """The ``engramdb.Settings`` fields the run imposes on every store it opens."""
        return {} if self.hnsw_m is None else {"hnsw_m": self.hnsw_m}

    @classmethod
    def for_size(cls, n: int, *, quick: bool = False, **overrides: Any) -> RunConfig:
        """Sensible query and batch counts for ``n`` rows; ``quick`` keeps everything small."""
        if quick:
            base = cls(
                n=n,
                quick=True,
                queries=500,
                filtered_queries=200,
                exact_queries=50,
                copy_indexed_rows=2_000,
                insert_rows=500,
                executemany_rows=2_000,
            )
        else:
            base = cls(n=n, copy_indexed_rows=min(max(n // 10, 1_000), 20_000))
        for key, value in overrides.items():
            setattr(base, key, value)
        return base

    @property
    def extra_rows(self) -> int:
        """Rows generated beyond ``n`` for the ingest-into-a-full-table measurements: COPY,
        executemany, then the single-row slices below, each written once per database."""
        return max(
            max(stop for _, _, stop in raw_concurrent_slices(self)),
            raw_insert_turns_slice(self)[1],
        )

    @property
    def spec(self) -> WorkloadSpec:
        return WorkloadSpec(n=self.n, dim=self.dim, tenants=self.tenants, seed=self.seed)


#: Writer thread counts of the concurrent single-row write measurements.
WRITER_THREADS: tuple[int, ...] = (1, 2, 4)
#: Turns each side takes when engramdb's concurrent writers alternate with raw ones.
CONCURRENT_TURNS = 2


def single_insert_slice(cfg: RunConfig) -> tuple[int, int]:
    """The extra rows ``raw.insert.commit_per_row`` inserts (after COPY and executemany)."""
    start = cfg.copy_indexed_rows + cfg.executemany_rows
    return start, start + cfg.insert_rows


def raw_copy_turns_slice(cfg: RunConfig) -> tuple[int, int]:
    """The extra rows ``raw.copy.engramdb_table`` copies into engramdb's own table, taking turns
    with ``engramdb.add_many``: the rows the raw suite wrote with executemany and one INSERT per
    row, which nothing writes into engramdb's table (its add_many writes the rows before them,
    its single adds the rows after them)."""
    start = cfg.copy_indexed_rows
    return start, single_insert_slice(cfg)[1]


def interleaved_slice(cfg: RunConfig) -> tuple[int, int]:
    """The extra rows ``engramdb.add.single`` adds and ``raw.insert.interleaved`` inserts: new
    to both tables. An HNSW graph takes a vector it already holds faster than a new one: on
    10,000 rows, raw INSERT + COMMITs of rows already in the table (under new ids) ran at 618
    rows/s against 430 for new rows, alternating in blocks of 50. Earlier versions of this suite
    compared engramdb's adds of new rows with raw inserts of rows the raw table held."""
    start = single_insert_slice(cfg)[1]
    return start, start + cfg.insert_rows


def concurrent_slices(cfg: RunConfig) -> list[tuple[int, int, int]]:
    """``(threads, start, stop)``: the extra rows each concurrent-writer measurement writes.

    One equal part per thread count (a multiple of every thread count times the turns, so each
    thread writes as many rows in each turn), after every other slice: the raw suite and the
    engramdb suite, each in its own database, both write them for the first time.
    """
    per = min(cfg.insert_rows, cfg.executemany_rows // len(WRITER_THREADS))
    per -= per % (max(WRITER_THREADS) * CONCURRENT_TURNS)
    start = interleaved_slice(cfg)[1]
    return [(t, start + j * per, start + (j + 1) * per) for j, t in enumerate(WRITER_THREADS)]


def raw_concurrent_slices(cfg: RunConfig) -> list[tuple[int, int, int]]:
    """``(threads, start, stop)``: the extra rows of ``raw.insert.concurrent.interleaved.t<T>``,
    the raw writers taking turns with engramdb's concurrent ones. The raw table has written
    :func:`concurrent_slices`' rows already, so these are the next ones, as many."""
    slices = concurrent_slices(cfg)
    offset = slices[-1][2] - slices[0][1]
    return [(t, start + offset, stop + offset) for t, start, stop in slices]


def raw_insert_turns_slice(cfg: RunConfig) -> tuple[int, int]:
    """The extra rows ``raw.insert.engramdb_table`` inserts into engramdb's own table, taking
    turns with ``engramdb.add.single``: as many as the single adds, from the rows of the raw
    writers (:func:`raw_concurrent_slices`), which only the raw suite's table receives."""
    start = raw_concurrent_slices(cfg)[0][1]
    return start, start + cfg.insert_rows


@dataclass
class Measurement:
    """One figure (with its companions) of one suite.

    ``kind`` decides the primary metric (:data:`PRIMARY_METRIC`) and the report table.
    ``baseline`` names another measurement of the same run; the report shows
    ``primary / baseline's primary`` (so >1 means faster for throughput, slower for latency).
    """

    name: str
    kind: Kind
    metrics: dict[str, float]
    params: dict[str, Any] = field(default_factory=dict)
    baseline: str | None = None
    suite: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def primary(self) -> str:
        return PRIMARY_METRIC[self.kind]

    @property
    def value(self) -> float:
        return self.metrics.get(self.primary, float("nan"))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "suite": self.suite,
            "kind": self.kind,
            "primary": self.primary,
            "metrics": self.metrics,
            "params": self.params,
            "baseline": self.baseline,
            "notes": self.notes,
        }


SuiteFn = Callable[["Context"], None]


@dataclass(frozen=True)
class Suite:
    name: str
    fn: SuiteFn
    description: str
    #: Suites whose measurements this one's are compared against: always run, and first.
    baseline: tuple[str, ...]
    #: Run when ``--only`` is not given.
    default: bool


_REGISTRY: dict[str, Suite] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def bench(
    name: str,
    *,
    baseline: str | Sequence[str] = (),
    description: str = "",
    default: bool = True,
) -> Callable[[SuiteFn], SuiteFn]:
    """Register a suite: ``@bench("engramdb", baseline="raw")``.

    ``baseline`` lists the suites this one compares itself to; they are run first even when
    only this suite is selected, so ratios are always computed within one run.
    """
    if not _NAME.match(name):
        raise ValueError(f"suite name must match {_NAME.pattern}: {name!r}")
    deps = (baseline,) if isinstance(baseline, str) else tuple(baseline)

    def register(fn: SuiteFn) -> SuiteFn:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"suite {name!r} registered twice")
        doc = description or (fn.__doc__ or "").strip().split("\n")[0]
        _REGISTRY[name] = Suite(name, fn, doc, deps, default)
        return fn

    return register


def registered() -> dict[str, Suite]:
    return dict(_REGISTRY)


def load_suites(modules: Sequence[str] = SUITE_MODULES) -> dict[str, str]:
    """Import the suite modules; returns ``{module: error}`` for those that failed."""
    failed: dict[str, str] = {}
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # a broken optional suite must not stop the others
            failed[module] = f"{type(exc).__name__}: {exc}"
    return failed


def resolve(only: Sequence[str] | None) -> list[Suite]:
    """The suites to run, baselines before the suites that compare against them."""
    names = list(only) if only else [s.name for s in _REGISTRY.values() if s.default]
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        raise KeyError(f"unknown suite(s) {unknown}; known: {sorted(_REGISTRY)}")
    ordered: list[Suite] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise ValueError(f"baseline cycle: {' -> '.join((*path, name))}")
        if any(s.name == name for s in ordered):
            return
        suite = _REGISTRY.get(name)
        if suite is None:
            raise KeyError(f"suite {path[-1]!r} has unknown baseline suite {name!r}")
        for dep in suite.baseline:
            visit(dep, (*path, name))
        ordered.append(suite)

    for name in names:
        visit(name, ())
    return ordered


class Context:
    """What a suite gets: the run's config, the shared workload and server, and ``record``."""

    def __init__(
        self,
        config: RunConfig,
        server: PgServer,
        suite: str,
        results: list[Measurement],
        workload_cache: dict[str, Workload],
        t0: float,
        shared: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.server = server
        self.suite = suite
        self._results = results
        self._workload_cache = workload_cache
        self._t0 = t0
        self._databases: list[str] = []
        #: Run-wide artefacts suites hand to later ones (e.g. the URI of a loaded engramdb
        #: database kept with ``database(..., keep=True)``), so nothing is loaded twice.
        self.shared: dict[str, Any] = {} if shared is None else shared

    @property
    def workload(self) -> Workload:
        """The run's workload, generated once and shared by every suite."""
        if "w" not in self._workload_cache:
            c = self.config
            self.log(f"generating workload: n={c.n} dim={c.dim} tenants={c.tenants} seed={c.seed}")
            started = time.perf_counter()
            self._workload_cache["w"] = generate(
                c.spec,
                extra=c.extra_rows,
                n_unfiltered=c.queries,
                n_filtered=c.filtered_queries,
                k=c.k,
            )
            self.log(f"workload ready in {time.perf_counter() - started:.1f}s")
        return self._workload_cache["w"]

    def log(self, message: str) -> None:
        elapsed = time.perf_counter() - self._t0
        print(f"[{elapsed:7.1f}s] {self.suite}: {message}", file=sys.stderr, flush=True)

    def database(self, name: str = "", *, keep: bool = False) -> str:
        """A fresh database ``bench_<suite>[_<name>]`` with pgvector; returns its URI.

        ``keep=True``: not dropped after the suite (later suites may use it through
        :attr:`shared`); it goes with the server at the end of the run.
        """
        db = f"bench_{self.suite}" + (f"_{name}" if name else "")
        if not keep:
            self._databases.append(db)
        return self.server.create_database(db)

    @contextlib.contextmanager
    def scratch_database(self, name: str) -> Iterator[str]:
        """A fresh database ``bench_<suite>_<name>`` for one timed step, dropped when the step
        ends: each turn of a repeated import starts empty, and frees its disk and memory."""
        db = f"bench_{self.suite}_{name}"
        uri = self.server.create_database(db)
        try:
            yield uri
        finally:
            self.server.drop_database(db)

    def quiesce(self) -> None:
        """Let background work left by what ran before finish (PgServer.quiesce) before a
        timed phase; says so when there was some."""
        try:
            waited = self.server.quiesce()
        except psycopg.Error as exc:  # a figure taken without waiting beats no figure at all
            self.log(f"could not check for autovacuum workers: {exc}")
            return
        if waited >= 0.1:
            self.log(f"waited {waited:.1f}s for autovacuum to finish")

    def find(self, name: str) -> Measurement | None:
        """A measurement already recorded in this run (by any suite), e.g. to pick a baseline."""
        return next((m for m in self._results if m.name == name), None)

    def drop_databases(self) -> None:
        """Called by the runner after the suite, to free disk and memory for the next one."""
        for db in self._databases:
            self.server.drop_database(db)
        self._databases.clear()

    # -- recording ---------------------------------------------------------------------------

    def record(self, m: Measurement) -> Measurement:
        m.suite = self.suite
        if any(r.name == m.name for r in self._results):
            raise ValueError(f"measurement {m.name!r} recorded twice")
        self._results.append(m)
        self.log(f"{m.name}: {_short(m)}")
        return m

    def throughput(
        self,
        name: str,
        rows: int,
        seconds: float,
        *,
        baseline: str | None = None,
        extra: dict[str, float] | None = None,
        **params: Any,
    ) -> Measurement:
        metrics = {"rows": float(rows), "seconds": seconds, "rows_per_s": rate(rows, seconds)}
        metrics.update(extra or {})
        return self.record(Measurement(name, "throughput", metrics, params, baseline))

    def duration(
        self,
        name: str,
        seconds: float,
        *,
        baseline: str | None = None,
        extra: dict[str, float] | None = None,
        **params: Any,
    ) -> Measurement:
        metrics = {"seconds": seconds, **(extra or {})}
        return self.record(Measurement(name, "duration", metrics, params, baseline))

    def latency(
        self,
        name: str,
        result: SearchResult | LatencyStats,
        *,
        baseline: str | None = None,
        **params: Any,
    ) -> Measurement:
        if isinstance(result, SearchResult) and result.recalls:
            params.setdefault("worst_queries", [list(x) for x in result.worst()])
        return self.record(Measurement(name, "latency", result.as_metrics(), params, baseline))


def _short(m: Measurement) -> str:
    x = m.metrics
    if m.kind == "throughput":
        return f"{x['rows']:.0f} rows in {x['seconds']:.2f}s = {x['rows_per_s']:,.0f} rows/s"
    if m.kind == "duration":
        return f"{x['seconds']:.2f}s"
    recall = f" recall={x['recall']:.3f}" if "recall" in x else ""
    return f"p50={x['p50_ms']:.2f}ms p95={x['p95_ms']:.2f}ms{recall}"
