"""engramdb's benchmark suite: deterministic workload, raw pgvector baselines, reports.

Run ``python -m benchmarks --quick`` (about two minutes) or ``python -m benchmarks`` (100k
memories). Suites register with :func:`bench`; see ``benchmarks/README.md``.
"""

from .registry import Context, Measurement, RunConfig, bench

__all__ = ["Context", "Measurement", "RunConfig", "bench"]
