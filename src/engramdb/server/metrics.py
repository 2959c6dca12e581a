"""Prometheus metrics of one app: requests, latency, searches, pool use, usage queue."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """A registry per app, so several apps in one process (tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "engramdb_http_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "engramdb_http_request_seconds",
            "HTTP request latency by route and method.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.search_latency = Histogram(
            "engramdb_search_seconds",
            "Memory search latency by mode.",
            ["mode"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.memories_written = Counter(
            "engramdb_memories_written_total",
            "Memories created through the API.",
            registry=self.registry,
        )
        self.pool = Gauge(
            "engramdb_pool_connections",
            "Database pool connections by state.",
            ["state"],
            registry=self.registry,
        )
        self.async_pool = Gauge(
            "engramdb_async_pool_connections",
            "Connections of the asynchronous pool for hot searches, by state.",
            ["state"],
            registry=self.registry,
        )
        self.searches_on_loop = Counter(
            "engramdb_searches_on_loop",
            "Searches whose statement was awaited on the event loop (the rest ran in a thread).",
            registry=self.registry,
        )
        self._on_loop_seen = 0
        self.usage_pending = Gauge(
            "engramdb_usage_events_pending",
            "Usage events waiting to be written.",
            registry=self.registry,
        )

    def render(
        self,
        pool_stats: dict[str, Any] | None,
        usage_pending: int,
        async_pool_stats: dict[str, Any] | None = None,
        searches_on_loop: int | None = None,
    ) -> bytes:
        _set_pool(self.pool, pool_stats)
        _set_pool(self.async_pool, async_pool_stats)
        if searches_on_loop is not None and searches_on_loop > self._on_loop_seen:
            # The store counts; the counter follows it from one scrape to the next.
            self.searches_on_loop.inc(searches_on_loop - self._on_loop_seen)
            self._on_loop_seen = searches_on_loop
        self.usage_pending.set(usage_pending)
        return bytes(generate_latest(self.registry))


def _set_pool(gauge: Gauge, stats: dict[str, Any] | None) -> None:
    """psycopg_pool's statistics as ``size``, ``available``, ``in_use`` and ``waiting``."""
    if not stats:
        return
    size = int(stats.get("pool_size", 0))
    available = int(stats.get("pool_available", 0))
    gauge.labels("size").set(size)
    gauge.labels("available").set(available)
    gauge.labels("in_use").set(max(0, size - available))
    gauge.labels("waiting").set(int(stats.get("requests_waiting", 0)))
