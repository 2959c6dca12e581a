"""Command line and orchestration: ``python -m benchmarks [options]``.

One run = one embedded PostgreSQL server, one workload (generated once, shared by all suites),
each selected suite in its own fresh database, then one JSON + Markdown report.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from . import report as report_mod
from .registry import Context, Measurement, RunConfig, load_suites, registered, resolve
from .server import PgServer
from .workload import Workload

DEFAULT_OUT = Path(__file__).parent / "results"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="engramdb benchmark suite (embedded PostgreSQL + pgvector).",
    )
    p.add_argument("--n", type=int, help="memories in the base table (default 100000; quick 10000)")
    p.add_argument("--dim", type=int, default=384, help="embedding dimensions (default 384)")
    p.add_argument("--tenants", type=int, default=100, help="agents; users = 10 x tenants")
    p.add_argument("--seed", type=int, default=42, help="workload seed (default 42)")
    p.add_argument("--quick", action="store_true", help="10k memories, small query counts")
    p.add_argument("--queries", type=int, help="unfiltered queries (filtered: --filtered-queries)")
    p.add_argument("--filtered-queries", type=int, help="queries per filter bucket and plan")
    p.add_argument("--ef-search", type=int, help="hnsw.ef_search for HNSW plans (default 40)")
    p.add_argument(
        "--hnsw-m",
        type=int,
        help="HNSW m of the raw and engramdb graphs alike, 2 to 100 (default: engramdb's)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for the reports")
    p.add_argument("--name", help="report name prefix (default: quick or n<N>)")
    p.add_argument(
        "--only",
        action="append",
        metavar="NAMES",
        help="comma-separated suites to run (their baseline suites run too); repeatable",
    )
    p.add_argument("--list", action="store_true", help="list the suites and exit")
    p.add_argument(
        "--pg-defaults",
        action="store_true",
        help="keep initdb's PostgreSQL settings instead of the tuned ones",
    )
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    n = args.n if args.n is not None else (10_000 if args.quick else 100_000)
    overrides = {
        "dim": args.dim,
        "tenants": args.tenants,
        "seed": args.seed,
        "tune_server": not args.pg_defaults,
    }
    if args.queries is not None:
        overrides["queries"] = args.queries
    if args.filtered_queries is not None:
        overrides["filtered_queries"] = args.filtered_queries
    if args.ef_search is not None:
        overrides["ef_search"] = args.ef_search
    if args.hnsw_m is not None:
        # pgvector's range, checked here rather than by the first index build minutes later.
        if not 2 <= args.hnsw_m <= 100:
            raise SystemExit(f"--hnsw-m must be between 2 and 100, not {args.hnsw_m}")
        overrides["hnsw_m"] = args.hnsw_m
    return RunConfig.for_size(n, quick=args.quick, **overrides)


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM (e.g. from `timeout`) into a normal exit, so that `finally` blocks stop the
    # embedded server and delete its directory instead of leaving a postmaster behind.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, CI); it is harmless here.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    warnings.filterwarnings("ignore", module="platformdirs")
    args = parse_args(argv)
    skipped = load_suites()
    if args.list:
        for suite in registered().values():
            deps = f" (baseline: {', '.join(suite.baseline)})" if suite.baseline else ""
            print(f"{suite.name:<16} {suite.description}{deps}")
        for module, error in skipped.items():
            print(f"{module}: not loaded: {error}")
        return 0
    only = [n.strip() for item in args.only or [] for n in item.split(",") if n.strip()]
    suites = resolve(only or None)
    config = config_from_args(args)
    name = args.name or ("quick" if config.quick else f"n{config.n}")
    signal.signal(signal.SIGTERM, _terminate)

    t0 = time.perf_counter()
    run = report_mod.RunReport(name=name, config=config, skipped_modules=skipped)
    run.machine = report_mod.machine_info()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f}s] {message}", file=sys.stderr, flush=True)

    log(f"suites: {', '.join(s.name for s in suites)}; n={config.n} dim={config.dim}")
    results: list[Measurement] = run.measurements
    cache: dict[str, Workload] = {}
    shared: dict[str, Any] = {}
    with PgServer(tune=config.tune_server, log=log) as server:
        run.server = server.describe()
        for suite in suites:
            ctx = Context(config, server, suite.name, results, cache, t0, shared)
            if "w" not in cache:
                started = time.perf_counter()
                workload = ctx.workload
                run.workload_seconds = time.perf_counter() - started
                run.workload = workload.summary()
            entry = report_mod.SuiteRun(suite.name, suite.description)
            run.suites.append(entry)
            ctx.quiesce()
            started = time.perf_counter()
            try:
                suite.fn(ctx)
            except Exception as exc:  # report what failed, keep the other suites' figures
                entry.status = "failed"
                entry.error = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            finally:
                entry.seconds = time.perf_counter() - started
                try:
                    ctx.drop_databases()
                except Exception as exc:
                    log(f"could not drop {suite.name}'s databases: {exc}")
            log(f"suite {suite.name} {entry.status} in {entry.seconds:.1f}s")

    run.seconds = time.perf_counter() - t0
    run.machine["loadavg_end"] = report_mod.loadavg()
    json_path, md_path = report_mod.write(run, args.out)
    print(report_mod.markdown(run))
    log(f"wrote {json_path} and {md_path}")
    return 0 if all(s.status == "ok" for s in run.suites) else 1
