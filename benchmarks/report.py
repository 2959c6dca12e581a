"""Reporting: machine description, ratios to baselines, JSON and Markdown output.

One run writes ``<out>/<name>-<timestamp>.json`` (everything, machine-readable) and
``<out>/<name>-<timestamp>.md`` (the same tables that are printed to stdout).

Ratios: a measurement that names a ``baseline`` gets ``ratio = primary / baseline's primary``,
both measured in the same run on the same machine. For throughput (rows/s) above 1 is better;
for latency (p50 ms) and durations (s) below 1 is better.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from .measure import round_floats
from .registry import Measurement, RunConfig
from .server import cpu_count, ram_bytes


def machine_info() -> dict[str, Any]:
    """What the figures depend on, besides the software under test."""
    cpu_model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu_model,
        "cores": cpu_count(),
        "ram_gib": round(ram_bytes() / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "psycopg": psycopg.__version__,
        "libpq": psycopg.pq.version(),
        "git_commit": _git_commit(),
        "loadavg_start": loadavg(),
    }


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _git_commit() -> str | None:
    """The commit the run's code is at, ``-dirty`` appended when tracked files differ from it
    (a report taken on uncommitted changes says so)."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=7", "--exclude=*"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


@dataclass
class SuiteRun:
    name: str
    description: str
    status: str = "ok"  # ok | failed | skipped
    seconds: float = 0.0
    error: str | None = None


@dataclass
class RunReport:
    """Everything about one run; built by the runner, written by :func:`write`."""

    name: str
    config: RunConfig
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    seconds: float = 0.0
    machine: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    workload: dict[str, Any] = field(default_factory=dict)
    workload_seconds: float = 0.0
    suites: list[SuiteRun] = field(default_factory=list)
    skipped_modules: dict[str, str] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)

    @property
    def stem(self) -> str:
        return f"{self.name}-{self.started_at.strftime('%Y%m%dT%H%M%SZ')}"

    def ratios(self) -> dict[str, float | None]:
        """``{measurement: primary / baseline primary}`` for measurements with a baseline."""
        by_name = {m.name: m for m in self.measurements}
        out: dict[str, float | None] = {}
        for m in self.measurements:
            if m.baseline is None:
                continue
            base = by_name.get(m.baseline)
            if base is None or base.kind != m.kind or not base.value or not np.isfinite(m.value):
                out[m.name] = None
            else:
                out[m.name] = m.value / base.value
        return out

    def to_json(self) -> dict[str, Any]:
        ratios = self.ratios()
        data: dict[str, Any] = round_floats(
            {
                "name": self.name,
                "started_at": self.started_at.isoformat(),
                "seconds": self.seconds,
                "config": asdict(self.config),
                "machine": self.machine,
                "server": self.server,
                "workload": self.workload,
                "workload_seconds": self.workload_seconds,
                "suites": [asdict(s) for s in self.suites],
                "skipped_modules": self.skipped_modules,
                "measurements": [
                    {**m.to_json(), "ratio_to_baseline": ratios.get(m.name)}
                    for m in self.measurements
                ],
            }
        )
        return data


def write(report: RunReport, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{report.stem}.json"
    md_path = out_dir / f"{report.stem}.md"
    json_path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    md_path.write_text(markdown(report))
    return json_path, md_path


# --------------------------------------------------------------------------------------------
# Markdown


def _num(x: float | None, digits: int = 3) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _ms(x: float | None) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:.2f}" if x < 100 else f"{x:,.0f}"


def _pct(x: Any) -> str:
    if not isinstance(x, int | float):
        return ""
    pct = float(x) * 100
    return f"{pct:.3g}%" if pct < 1 else f"{pct:.0f}%"


def _plan(params: dict[str, Any]) -> str:
    """The plan column: the shape, or each shape with its share of the filter values."""
    shapes = params.get("plan_shapes")
    if isinstance(shapes, dict) and len(shapes) > 1:
        total = sum(shapes.values())
        return "; ".join(f"{sh} ({n}/{total} values)" for sh, n in shapes.items())
    return str(params.get("plan_shape") or params.get("plan") or "")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def markdown(report: RunReport) -> str:
    c, mc, sv, wl = report.config, report.machine, report.server, report.workload
    ratios = report.ratios()
    settings = sv.get("settings", {})
    mode = "--quick" if c.quick else "full"
    lines = [
        f"# engramdb benchmarks: {report.name}",
        "",
        f"- Run: {report.started_at.strftime('%Y-%m-%d %H:%M:%S UTC')}, {report.seconds:.0f} s"
        f" in total ({mode}; workload generation {report.workload_seconds:.0f} s)",
        f"- Machine: {mc.get('cpu')}, {mc.get('cores')} cores, {mc.get('ram_gib')} GiB RAM,"
        f" {mc.get('os')}; load average {mc.get('loadavg_start')} at start,"
        f" {mc.get('loadavg_end')} at end",
        f"- PostgreSQL {sv.get('postgresql')}, pgvector {sv.get('pgvector')}"
        f" ({'tuned' if sv.get('tuned') else 'initdb defaults'}: "
        + ", ".join(f"{k}={v}" for k, v in settings.items())
        + ")",
        f"- Python {mc.get('python')}, numpy {mc.get('numpy')}, psycopg {mc.get('psycopg')}"
        f" (libpq {mc.get('libpq')}); git {mc.get('git_commit') or 'n/a'}",
    ]
    if wl:
        lines.append(
            f"- Workload: n={wl['n']:,} rows (+{wl['extra_rows']:,} extra for ingest into a full"
            f" table), dim {wl['dim']}, {wl['clusters']} clusters, {wl['agents']} agents,"
            f" {wl['users']} users (Zipf s={wl['user_zipf_s']}), seed {wl['seed']}, k={wl['k']}"
        )
    if c.hnsw_m is not None:
        lines.append(f"- HNSW graphs built with m={c.hnsw_m} (--hnsw-m), raw and engramdb alike")
    lines.append("")

    if wl.get("query_sets"):
        lines += ["## Query sets", ""]
        lines += _table(
            ["set", "filter", "queries", "distinct values", "selectivity", "matching rows"],
            [
                [
                    q["name"],
                    q["column"] or "-",
                    str(q["queries"]),
                    str(q["distinct_values"]),
                    _pct(q["selectivity"]),
                    f"{q['matching_rows_min']:,}..{q['matching_rows_max']:,}",
                ]
                for q in wl["query_sets"]
            ],
        )
        lines.append("")

    lines += ["## Suites", ""]
    lines += _table(
        ["suite", "status", "seconds", "description"],
        [
            [
                s.name,
                s.status + (f": {s.error}" if s.error else ""),
                f"{s.seconds:.1f}",
                s.description,
            ]
            for s in report.suites
        ]
        + [[mod, f"skipped: {err}", "", ""] for mod, err in report.skipped_modules.items()],
    )
    lines.append("")

    def base_cols(m: Measurement) -> list[str]:
        if not m.baseline:
            return ["-", "-"]
        ratio = ratios.get(m.name)
        if ratio is None:  # baseline missing from this run, or of another kind
            return [m.baseline, "n/a"]
        return [m.baseline, f"{_num(ratio)}x"]

    throughput = [m for m in report.measurements if m.kind == "throughput"]
    if throughput:
        lines += ["## Ingest", ""]
        lines += _table(
            ["measurement", "rows", "seconds", "rows/s", "p50 ms", "p99 ms", "baseline", "ratio"],
            [
                [
                    m.name,
                    f"{m.metrics['rows']:,.0f}",
                    _num(m.metrics["seconds"]),
                    _num(m.metrics["rows_per_s"]),
                    _ms(m.metrics.get("p50_ms")) if "p50_ms" in m.metrics else "",
                    _ms(m.metrics.get("p99_ms")) if "p99_ms" in m.metrics else "",
                    *base_cols(m),
                ]
                for m in throughput
            ],
        )
        lines.append("")

    durations = [m for m in report.measurements if m.kind == "duration"]
    if durations:
        lines += ["## Durations", ""]
        lines += _table(
            ["measurement", "seconds", "details", "baseline", "ratio"],
            [
                [
                    m.name,
                    _num(m.metrics["seconds"]),
                    ", ".join(f"{k}={_num(v)}" for k, v in m.metrics.items() if k != "seconds")
                    + ("; " + "; ".join(m.notes) if m.notes else ""),
                    *base_cols(m),
                ]
                for m in durations
            ],
        )
        lines.append("")

    searches = [m for m in report.measurements if m.kind == "latency"]
    if searches:
        lines += [f"## Search: top-{c.k} latency and recall", ""]
        lines += _table(
            [
                "measurement",
                "selectivity",
                "plan",
                "queries",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                f"recall@{c.k}",
                "min recall",
                "baseline",
                "ratio",
            ],
            [
                [
                    m.name,
                    _pct(m.params.get("selectivity")),
                    _plan(m.params),
                    f"{m.metrics['queries']:.0f}",
                    _ms(m.metrics["p50_ms"]),
                    _ms(m.metrics["p95_ms"]),
                    _ms(m.metrics["p99_ms"]),
                    _num(m.metrics.get("recall")),
                    _num(m.metrics.get("recall_min")),
                    *base_cols(m),
                ]
                for m in searches
            ],
        )
        lines.append("")
        notes = [f"- {m.name}: {n}" for m in searches for n in m.notes]
        if notes:
            lines += ["Notes:", "", *notes, ""]

    lines += [
        "Ratio = this measurement's primary metric / its baseline's (same run): rows/s for"
        " ingest (>1 is faster), p50 latency for search and seconds for durations (<1 is"
        " faster). Latencies are client-side wall time per query, sequential, warm cache.",
        "",
    ]
    return "\n".join(lines)
