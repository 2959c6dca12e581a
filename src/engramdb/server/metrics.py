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
        self.usage_pending = Gauge(
            "engramdb_usage_events_pending",
            "Usage events waiting to be written.",
            registry=self.registry,
        )

    def render(self, pool_stats: dict[str, Any] | None, usage_pending: int) -> bytes:
        if pool_stats:
            size = int(pool_stats.get("pool_size", 0))
            available = int(pool_stats.get("pool_available", 0))
            self.pool.labels("size").set(size)
            self.pool.labels("available").set(available)
            self.pool.labels("in_use").set(max(0, size - available))
            self.pool.labels("waiting").set(int(pool_stats.get("requests_waiting", 0)))
        self.usage_pending.set(usage_pending)
        return bytes(generate_latest(self.registry))
