"""Scores: distance to similarity, rank fusion, recency and importance; pure functions only.

Every backend reports raw distances and ranks; these functions turn them into the one score
callers see, in [0, 1], higher is better, with the same meaning on every backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "Candidate",
    "Weights",
    "distance_to_similarity",
    "fuse",
    "one_list",
    "recency",
    "rrf",
    "text_rank_to_score",
]

RRF_K = 60


def distance_to_similarity(distance: float, metric: str) -> float:
    """Map a pgvector-style distance to a similarity in [0, 1].

    cosine: ``1 - distance`` (the cosine similarity, as the seeds' ``match_threshold``), clamped at 0;
    l2: ``1 / (1 + distance)``; ip: pgvector's ``<#>`` is the negated inner product, so
    ``-distance`` (equal to cosine for unit vectors), clamped to [0, 1].
    """
    if metric == "cosine":
        value = 1.0 - distance
    elif metric == "l2":
        value = 1.0 / (1.0 + max(distance, 0.0))
    elif metric == "ip":
        value = -distance
    else:  # pragma: no cover - validated earlier
        raise ValueError(f"unknown metric {metric!r}")
    return min(1.0, max(0.0, value))


def text_rank_to_score(rank: float) -> float:
    """Squash an unbounded text relevance (ts_rank_cd, -bm25) into [0, 1): ``r / (r + 1)``."""
    rank = max(rank, 0.0)
    return rank / (rank + 1.0)


def rrf(rank: int | None, k: int = RRF_K) -> float:
    """Reciprocal-rank contribution of a 1-based rank; 0 when the list did not return the item."""
    return 0.0 if rank is None else 1.0 / (k + rank)


def recency(moment: datetime, now: datetime, half_life_days: float) -> float:
    """Exponential decay in [0, 1]: 1 now, 0.5 after one half-life."""
    if half_life_days <= 0:
        return 1.0
    age_days = max((now - moment).total_seconds(), 0.0) / 86400.0
    return math.pow(0.5, age_days / half_life_days)


@dataclass(frozen=True)
class Weights:
    """How the components of a hybrid score are combined.

    ``vector`` / ``text`` weigh the two ranked lists in the fusion; ``recency`` and ``importance``
    are blended into the fused score: ``(1 - r - i) * fused + r * recency + i * importance``.
    """

    vector: float = 1.0
    text: float = 1.0
    recency: float = 0.0
    importance: float = 0.0
    half_life_days: float = 30.0
    fusion: str = "rrf"  # or "weighted": weighted mean of the similarities themselves

    def __post_init__(self) -> None:
        for name in ("vector", "text", "recency", "importance"):
            if getattr(self, name) < 0:
                raise ValueError(f"weight {name} must not be negative")
        if self.recency + self.importance > 1.0:
            raise ValueError("recency + importance weights must not exceed 1")
        if self.vector + self.text <= 0:
            raise ValueError("vector + text weights must be positive")
        if self.fusion not in ("rrf", "weighted"):
            raise ValueError("fusion must be 'rrf' or 'weighted'")


@dataclass
class Candidate:
    """What a backend found for one memory: ranks (1-based) and raw scores per list."""

    key: object
    vector_rank: int | None = None
    vector_similarity: float | None = None
    text_rank: int | None = None
    text_score: float | None = None
    created_at: datetime | None = None
    importance: float = 0.5
    extra: dict[str, float] = field(default_factory=dict)


def fuse(
    candidates: Sequence[Candidate],
    *,
    mode: str,
    weights: Weights,
    now: datetime,
) -> list[tuple[Candidate, float, dict[str, float]]]:
    """Score candidates; returns (candidate, score, components) sorted best first.

    ``mode`` "vector" or "text" scores by that list alone; "hybrid" fuses both lists.
    """
    out: list[tuple[Candidate, float, dict[str, float]]] = []
    # Normalise by the lists that returned anything: when no memory matches the words, the
    # best semantic hit still scores 1, not a misleading 0.5.
    max_rrf = 0.0
    if any(c.vector_rank is not None for c in candidates):
        max_rrf += weights.vector / (RRF_K + 1)
    if any(c.text_rank is not None for c in candidates):
        max_rrf += weights.text / (RRF_K + 1)
    for c in candidates:
        parts: dict[str, float] = {}
        if c.vector_similarity is not None:
            parts["vector"] = c.vector_similarity
        if c.text_score is not None:
            parts["text"] = c.text_score
        if mode == "vector":
            base = c.vector_similarity or 0.0
        elif mode == "text":
            base = c.text_score or 0.0
        elif weights.fusion == "weighted":
            total = weights.vector + weights.text
            base = (
                weights.vector * (c.vector_similarity or 0.0) + weights.text * (c.text_score or 0.0)
            ) / total
            parts["fused"] = base
        else:
            raw = weights.vector * rrf(c.vector_rank) + weights.text * rrf(c.text_rank)
            base = raw / max_rrf if max_rrf else 0.0
            parts["rrf"] = base
        score = base
        blend = weights.recency + weights.importance
        if blend > 0:
            rec = recency(c.created_at, now, weights.half_life_days) if c.created_at else 0.0
            parts["recency"] = rec
            parts["importance"] = c.importance
            score = (1 - blend) * base + weights.recency * rec + weights.importance * c.importance
        out.append((c, min(1.0, max(0.0, score)), parts))
    out.sort(key=lambda t: t[1], reverse=True)
    return out


def one_list(values: Sequence[float], mode: str, metric: str) -> list[tuple[int, float]]:
    """``(index, score)``, best first, for the candidates of one list with nothing blended in:
    ``values`` are their distances (``mode`` "vector") or text ranks ("text"). The same scores
    and order as :func:`fuse` gives them in that mode with no recency or importance weight
    (ties keep the list's order), without building a :class:`Candidate` per hit: on the
    commonest searches that was most of the scoring's time."""
    if mode == "vector":
        scores = [distance_to_similarity(v, metric) for v in values]
    elif mode == "text":
        scores = [text_rank_to_score(v) for v in values]
    else:
        raise ValueError(f"one list is searched in vector or text mode, not {mode!r}")
    order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)
    return [(i, scores[i]) for i in order]
