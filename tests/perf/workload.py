"""A small clustered workload with exact ground truth, for correctness (not timing) tests.

Points gather around unit-norm centres with variation along a few directions of each cluster,
as real embeddings do; users own Zipf-like shares of the rows, from a handful of rows to a
third of them, and half of each user's memories sit in the user's home clusters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


@dataclass
class Workload:
    vectors: F32  # (n, dim), unit norm
    users: list[str]  # owner of each row
    agents: list[str]

    def rows_of(self, user: str | None) -> npt.NDArray[np.int64]:
        if user is None:
            return np.arange(len(self.users))
        return np.flatnonzero(np.array(self.users) == user)

    def exact_top(self, query: F32, rows: npt.NDArray[np.int64], k: int = 10) -> list[int]:
        sims = self.vectors[rows] @ query
        order = np.argsort(-sims, kind="stable")[:k]
        return [int(rows[i]) for i in order]

    def recall(
        self, query: F32, rows: npt.NDArray[np.int64], found: list[int], k: int = 10
    ) -> float:
        """Recall@k; a hit within 1e-5 of the k-th similarity counts (float32 ties)."""
        truth = self.exact_top(query, rows, k)
        if not truth:
            return 1.0
        kth = float(self.vectors[truth[-1]] @ query)
        hits = sum(
            1 for r in found[:k] if r in truth or float(self.vectors[r] @ query) >= kth - 1e-5
        )
        return hits / len(truth)


def normalize(x: F32) -> F32:
    out: F32 = (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)
    return out


def generate(n: int = 4000, dim: int = 64, clusters: int = 40, seed: int = 7) -> Workload:
    rng = np.random.default_rng(seed)
    centres = normalize(rng.normal(size=(clusters, dim)).astype(np.float32))
    basis = rng.normal(size=(clusters, 4, dim)).astype(np.float32) * 0.35
    # Users by Zipf share: user-000 holds about a third of the rows, the tail a few rows each.
    n_users = 200
    weights = 1.0 / np.arange(1, n_users + 1) ** 1.3
    weights /= weights.sum()
    owner = rng.choice(n_users, size=n, p=weights)
    home = rng.integers(0, clusters, size=(n_users, 2))
    cluster = np.where(
        rng.random(n) < 0.5, home[owner, rng.integers(0, 2, size=n)], rng.integers(0, clusters, n)
    )
    coef = rng.normal(size=(n, 4)).astype(np.float32)
    points = centres[cluster] + np.einsum("nk,nkd->nd", coef, basis[cluster])
    points += rng.normal(scale=0.05, size=(n, dim)).astype(np.float32)
    return Workload(
        vectors=normalize(points.astype(np.float32)),
        users=[f"user-{u:03d}" for u in owner],
        agents=[f"agent-{u % 7}" for u in owner],
    )


def queries(w: Workload, rows: npt.NDArray[np.int64], count: int, seed: int) -> F32:
    """Fresh points near rows of the filtered subset (queries follow the subset's own data)."""
    rng = np.random.default_rng(seed)
    anchors = w.vectors[rng.choice(rows, size=count)]
    noise = rng.normal(scale=0.15, size=anchors.shape).astype(np.float32)
    return normalize(anchors + noise / np.sqrt(anchors.shape[1]) * 4)
