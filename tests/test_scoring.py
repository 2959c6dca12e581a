"""Scoring's pure functions: one list scored alone ranks as the rank fusion would."""

from __future__ import annotations

import random

import pytest

from engramdb.models import utcnow
from engramdb.scoring import (
    Candidate,
    Weights,
    distance_to_similarity,
    fuse,
    one_list,
    text_rank_to_score,
)


def _fused(values: list[float], mode: str, metric: str) -> list[tuple[int, float]]:
    """What fuse gives candidates found by one list (ranked as _hits ranks them)."""
    cands = [Candidate(i) for i in range(len(values))]
    if mode == "vector":
        for rank, i in enumerate(sorted(range(len(values)), key=values.__getitem__), start=1):
            cands[i].vector_rank = rank
            cands[i].vector_similarity = distance_to_similarity(values[i], metric)
    else:
        for rank, i in enumerate(sorted(range(len(values)), key=lambda i: -values[i]), start=1):
            cands[i].text_rank = rank
            cands[i].text_score = text_rank_to_score(values[i])
    out = fuse(cands, mode=mode, weights=Weights(), now=utcnow())
    for _, _, parts in out:
        assert list(parts) == [mode]  # the only component a one-list hit reports
    return [(int(str(c.key)), score) for c, score, _ in out]


@pytest.mark.parametrize(
    ("mode", "metric"),
    [("vector", "cosine"), ("vector", "l2"), ("vector", "ip"), ("text", "cosine")],
)
def test_one_list_scores_and_orders_as_fuse_does(mode: str, metric: str) -> None:
    rng = random.Random(11)
    for size in (0, 1, 2, 10, 40):
        # Ties (repeated values) and values past the clamps (cosine distances above 1, inner
        # products above 1) included: their order must stay the list's, as fuse keeps it.
        pool = [round(rng.uniform(-1.5, 2.5), 1) for _ in range(6)]
        values = [abs(rng.choice(pool)) if metric != "ip" else rng.choice(pool)
                  for _ in range(size)]  # fmt: skip
        assert one_list(values, mode, metric) == _fused(values, mode, metric), values


def test_one_list_refuses_hybrid() -> None:
    with pytest.raises(ValueError, match="vector or text"):
        one_list([0.1], "hybrid", "cosine")
