"""Deterministic synthetic workload: memories, held-out queries and exact ground truth.

Everything here is a pure function of a :class:`WorkloadSpec` (and its seed), so two runs, or
two systems under test in the same run, see byte-identical data and queries.

Shape of the data, and why:

* **Vectors** are unit-normalised points around ``n_clusters`` gaussian cluster centres. Each
  cluster varies along its own random low-dimensional subspace (``intrinsic_dim``) plus a little
  isotropic noise. Purely isotropic noise in 384 dimensions makes every point of a cluster almost
  equidistant from a query, a pathological case for graph indexes that real embeddings (whose
  intrinsic dimension is a few dozen) do not show.
* **Tenancy**: agents are uniform among ``tenants`` agents; users (``10 * tenants`` of them) follow
  a Zipf law, so that filtering on one user selects anything from ~0.01% to ~20% of the rows.
  Users have a few "home" clusters (their topics): filtered queries follow the filtered subset's
  own distribution, as a user's question tends to be about that user's memories.
* **Rows** are chronological (``created_at`` spread over a year, ascending) and carry
  time-ordered UUIDv7 ids derived from ``created_at``, like engramdb's own ids, so B-trees on
  ``id`` see the same append-mostly pattern as in production.
* ``metadata["n"]`` is the row's index in the workload: any system under test (which may assign
  its own ids) can map search hits back to the ground truth through it.

Ground truth (:func:`exact_topk`) is brute-force cosine similarity in numpy.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

ORGANIZATION = "default"
KINDS: tuple[str, ...] = ("message", "episodic", "semantic", "procedural", "reflection", "summary")
KIND_WEIGHTS: tuple[float, ...] = (0.50, 0.20, 0.15, 0.05, 0.05, 0.05)
SOURCES: tuple[str, ...] = ("chat", "email", "document", "api", "tool")
#: Fixed (not "now") so that the data does not depend on the day the benchmark runs.
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
YEAR = timedelta(days=365)

#: Column order of :meth:`Memories.rows`, and the PostgreSQL types used for binary COPY.
COLUMNS: tuple[str, ...] = (
    "id",
    "organization_id",
    "agent_id",
    "user_id",
    "room_id",
    "kind",
    "content",
    "tags",
    "metadata",
    "importance",
    "created_at",
    "embedding",
)
PG_TYPES: tuple[str, ...] = (
    "uuid",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text[]",
    "jsonb",
    "real",
    "timestamptz",
    "vector",
)

#: Target selectivities of the ``user_id`` query buckets (fraction of all rows).
USER_SELECTIVITIES: tuple[float, ...] = (0.0001, 0.001, 0.01, 0.1)

_ADJECTIVES = (
    "quarterly", "vintage", "remote", "urgent", "weekly", "mobile", "annual", "local",
    "private", "shared", "broken", "new", "legacy", "family", "spicy", "electric",
    "medical", "summer", "winter", "budget", "premium", "open", "missing", "secret",
    "daily", "noisy", "quiet", "green", "digital", "rental", "garden", "evening",
)  # fmt: skip
_NOUNS = (
    "invoice", "guitar", "trip", "meeting", "recipe", "car", "report", "apartment",
    "project", "subscription", "laptop", "dentist", "birthday", "garden", "contract", "flight",
    "newsletter", "bike", "password", "course", "insurance", "concert", "migration", "roadmap",
    "hike", "loan", "podcast", "deadline", "vaccine", "wedding", "printer", "tax return",
)  # fmt: skip
_GENERAL_TAGS = (
    "todo", "idea", "question", "preference", "fact", "reminder", "work", "personal",
    "health", "finance", "travel", "family", "followup", "important", "draft", "archive",
)  # fmt: skip
_WHEN = ("yesterday", "this morning", "last week", "on Monday", "twice", "again", "today")
_FACTS = (
    "is due at the end of the month",
    "was moved to the shared folder",
    "costs more than expected",
    "needs a second opinion",
    "is handled by the other team",
    "was cancelled and rebooked",
)
_STEPS = (
    "check the calendar first",
    "ask for a written confirmation",
    "compare the last three offers",
    "send a reminder two days before",
    "keep the receipts in one place",
)
_MOODS = ("positive", "worried", "neutral", "impatient", "curious")


@dataclass(frozen=True)
class WorkloadSpec:
    """What to generate. Everything derives deterministically from these fields."""

    n: int
    dim: int = 384
    tenants: int = 100
    seed: int = 42
    #: Exponent of the Zipf law over users; 1.1 spans ~0.01%..~18% with 1000 users.
    zipf_s: float = 1.1
    #: Exponent of the (milder) Zipf law over cluster popularity.
    cluster_zipf_s: float = 0.5
    #: Probability that a memory is about one of its user's home clusters.
    home_affinity: float = 0.5
    home_clusters: int = 3
    intrinsic_dim: int = 16
    #: Scale of the in-subspace variation and of the isotropic noise (centre has norm 1).
    spread: float = 0.8
    noise: float = 0.3

    @property
    def n_clusters(self) -> int:
        return min(1000, max(100, self.n // 100))

    @property
    def n_agents(self) -> int:
        return self.tenants

    @property
    def n_users(self) -> int:
        return 10 * self.tenants

    @property
    def n_rooms(self) -> int:
        return 5 * self.tenants


def agent_name(i: int) -> str:
    return f"agent-{i:05d}"


def user_name(i: int) -> str:
    return f"user-{i:05d}"


def room_name(i: int) -> str:
    return f"room-{i:05d}"


def topic(cluster: int) -> str:
    """A human-readable topic per cluster, so that content text correlates with the vector."""
    adj = _ADJECTIVES[cluster % len(_ADJECTIVES)]
    noun = _NOUNS[(cluster // len(_ADJECTIVES)) % len(_NOUNS)]
    return f"{adj} {noun}"


def _zipf_weights(count: int, s: float) -> npt.NDArray[np.float64]:
    w = 1.0 / np.arange(1, count + 1, dtype=np.float64) ** s
    out: npt.NDArray[np.float64] = w / w.sum()
    return out


def normalize(x: F32) -> F32:
    """Unit-normalise rows (or a single vector); zero rows stay zero."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.where(norms == 0, 1, norms)).astype(np.float32, copy=False)


@dataclass(frozen=True)
class Universe:
    """The fixed "world" the rows are drawn from: clusters, their subspaces, users' topics."""

    spec: WorkloadSpec
    centres: F32  # (C, D), unit norm
    bases: F32  # (C, k, D): row j is the j-th direction of the cluster's subspace, norm ~1
    cluster_p: npt.NDArray[np.float64]  # (C,) popularity
    user_p: npt.NDArray[np.float64]  # (U,) Zipf, randomly permuted over user numbers
    user_home: npt.NDArray[np.int64]  # (U, H) home clusters per user

    @classmethod
    def create(cls, spec: WorkloadSpec) -> Universe:
        rng = np.random.default_rng([spec.seed, 0])
        c, d, k = spec.n_clusters, spec.dim, spec.intrinsic_dim
        centres = normalize(rng.standard_normal((c, d), dtype=np.float32))
        bases = rng.standard_normal((c, k, d), dtype=np.float32) / np.float32(math.sqrt(d))
        cluster_p = rng.permutation(_zipf_weights(c, spec.cluster_zipf_s))
        # Permuted so that user-00000 is not always the biggest one.
        user_p = rng.permutation(_zipf_weights(spec.n_users, spec.zipf_s))
        user_home = rng.integers(0, c, size=(spec.n_users, spec.home_clusters))
        return cls(spec, centres, bases, cluster_p, user_p, user_home)

    def sample_points(self, clusters: npt.NDArray[np.int64], rng: np.random.Generator) -> F32:
        """One fresh unit vector around each given cluster (loop over clusters, not rows)."""
        spec = self.spec
        # Isotropic part for all rows at once; the per-cluster loop only adds centre + subspace.
        noise = np.float32(spec.noise / math.sqrt(spec.dim))
        out = rng.standard_normal((len(clusters), spec.dim), dtype=np.float32)
        out *= noise
        order = np.argsort(clusters, kind="stable")
        sorted_c = clusters[order]
        bounds = np.flatnonzero(np.diff(sorted_c)) + 1
        scale = np.float32(spec.spread / math.sqrt(spec.intrinsic_dim))
        for seg in np.split(np.arange(len(clusters)), bounds):
            if len(seg) == 0:
                continue
            c = int(sorted_c[seg[0]])
            rows = order[seg]
            z = rng.standard_normal((len(rows), spec.intrinsic_dim), dtype=np.float32)
            out[rows] += self.centres[c] + scale * (z @ self.bases[c])
        return normalize(out)


@dataclass
class Memories:
    """A columnar batch of synthetic memories (row ``i`` of every array is one memory)."""

    ids: list[uuid.UUID]
    vectors: F32  # (n, dim), unit norm
    cluster: I64
    agent: I64
    user: I64
    room: I64  # -1 = no room
    kind: I64
    source: I64
    importance: npt.NDArray[np.float64]
    created_at: I64  # microseconds since the Unix epoch, ascending
    tags: list[list[str]]
    content: list[str]
    #: Workload-wide index of row 0 (extra rows continue after the base rows).
    offset: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, i: int) -> tuple[Any, ...]:
        """Row ``i`` as a tuple in :data:`COLUMNS` order, ready for COPY or INSERT."""
        room = int(self.room[i])
        return (
            self.ids[i],
            ORGANIZATION,
            agent_name(int(self.agent[i])),
            user_name(int(self.user[i])),
            room_name(room) if room >= 0 else None,
            KINDS[int(self.kind[i])],
            self.content[i],
            self.tags[i],
            {"source": SOURCES[int(self.source[i])], "n": self.offset + i},
            float(self.importance[i]),
            EPOCH + timedelta(microseconds=int(self.created_at[i]) - _EPOCH_US),
            self.vectors[i],
        )

    def rows(self, start: int = 0, stop: int | None = None) -> list[tuple[Any, ...]]:
        stop = len(self) if stop is None else min(stop, len(self))
        return [self.row(i) for i in range(start, stop)]

    def iter_rows(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[Any, ...]]:
        stop = len(self) if stop is None else min(stop, len(self))
        return (self.row(i) for i in range(start, stop))


_EPOCH_US = int(EPOCH.timestamp()) * 1_000_000


def _uuid7(ms: npt.NDArray[np.int64], rng: np.random.Generator) -> list[uuid.UUID]:
    """UUIDv7 (RFC 9562) from given millisecond timestamps and seeded random bits."""
    rand_a = rng.integers(0, 1 << 12, size=len(ms))
    rand_b = rng.integers(0, 1 << 62, size=len(ms), dtype=np.int64)
    out = []
    for t, a, b in zip(ms.tolist(), rand_a.tolist(), rand_b.tolist(), strict=True):
        value = (t & ((1 << 48) - 1)) << 80 | 0x7 << 76 | a << 64 | 0b10 << 62 | b
        out.append(uuid.UUID(int=value))
    return out


def _content(kind: int, user: int, agent: int, cluster: int, n: int, r: int) -> str:
    t = topic(cluster)
    name = KINDS[kind]
    if name == "message":
        return f"{user_name(user)} asked about the {t} {_WHEN[r % len(_WHEN)]}."
    if name == "episodic":
        return f"{user_name(user)} and {agent_name(agent)} talked about the {t} (#{n})."
    if name == "semantic":
        return f"The {t} {_FACTS[r % len(_FACTS)]}."
    if name == "procedural":
        return f"To deal with the {t}, {_STEPS[r % len(_STEPS)]}."
    if name == "reflection":
        return f"{user_name(user)} seems to care a lot about the {t}."
    return f"Summary: {1 + r % 9} notes on the {t}, mostly {_MOODS[r % len(_MOODS)]}."


def generate_memories(
    universe: Universe,
    count: int,
    *,
    stream: int,
    start: datetime,
    span: timedelta,
    offset: int = 0,
) -> Memories:
    """``count`` memories with ``created_at`` ascending in ``[start, start + span)``.

    ``stream`` selects an independent random stream, so the base rows do not depend on how
    many extra rows are generated after them.
    """
    spec = universe.spec
    rng = np.random.default_rng([spec.seed, 1, stream])
    c = spec.n_clusters
    user = rng.choice(spec.n_users, size=count, p=universe.user_p)
    agent = rng.integers(0, spec.n_agents, size=count)
    home = universe.user_home[user, rng.integers(0, spec.home_clusters, size=count)]
    anywhere = rng.choice(c, size=count, p=universe.cluster_p)
    cluster = np.where(rng.random(count) < spec.home_affinity, home, anywhere).astype(np.int64)
    vectors = universe.sample_points(cluster, rng)
    room = np.where(rng.random(count) < 0.3, -1, rng.integers(0, spec.n_rooms, size=count))
    kind = rng.choice(len(KINDS), size=count, p=np.array(KIND_WEIGHTS))
    source = rng.integers(0, len(SOURCES), size=count)
    importance = np.round(rng.beta(2.0, 3.0, size=count), 2)
    # Times are i.i.d. and independent of everything else, so sorting them alone (rather than
    # permuting the rows) yields the same distribution with rows in chronological order.
    start_us = int(start.timestamp() * 1_000_000)
    span_us = int(span.total_seconds() * 1_000_000)
    created = np.sort(rng.integers(0, span_us, size=count)) + start_us
    ids = _uuid7(created // 1000, rng)
    n_extra_tags = rng.integers(0, 3, size=count)
    has_topic_tag = rng.random(count) < 0.7
    tag_picks = rng.integers(0, len(_GENERAL_TAGS), size=(count, 2))
    variant = rng.integers(0, 1 << 30, size=count)
    tags: list[list[str]] = []
    content: list[str] = []
    for i in range(count):
        cl = int(cluster[i])
        row_tags = [_NOUNS[(cl // len(_ADJECTIVES)) % len(_NOUNS)]] if has_topic_tag[i] else []
        for j in range(int(n_extra_tags[i])):
            tag = _GENERAL_TAGS[int(tag_picks[i, j])]
            if tag not in row_tags:
                row_tags.append(tag)
        tags.append(row_tags)
        content.append(
            _content(int(kind[i]), int(user[i]), int(agent[i]), cl, offset + i, int(variant[i]))
        )
    return Memories(
        ids=ids,
        vectors=vectors,
        cluster=cluster,
        agent=agent,
        user=user,
        room=room,
        kind=kind,
        source=source,
        importance=importance,
        created_at=created,
        tags=tags,
        content=content,
        offset=offset,
    )


# --------------------------------------------------------------------------------------------
# Ground truth


def exact_topk(
    vectors: npt.ArrayLike,
    queries: npt.ArrayLike,
    k: int = 10,
    candidates: Sequence[npt.ArrayLike] | npt.ArrayLike | None = None,
    *,
    block: int = 64,
) -> tuple[I64, F32]:
    """Exact top-``k`` by cosine similarity, brute force.

    ``vectors`` is (n, d), ``queries`` (q, d) or (d,); neither needs to be normalised.
    ``candidates`` restricts the search (a filter): ``None`` for all rows, one index array
    shared by every query, or a sequence of ``q`` index arrays (one per query).

    Returns ``(indices, similarities)``, both (q, k), best first; indices are row numbers of
    ``vectors``, padded with -1 (similarity ``-inf``) when fewer than ``k`` rows qualify.
    Ties are broken by the lower row index, so the result is fully deterministic.
    """
    # Only the rows actually searched get normalised (a filtered search touches few of them).
    data = np.asarray(vectors, dtype=np.float32)
    qs = normalize(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
    nq = len(qs)
    out_idx = np.full((nq, k), -1, dtype=np.int64)
    out_sim = np.full((nq, k), -np.inf, dtype=np.float32)

    def topk_into(rows: slice | I64, sub: F32, cand: I64 | None) -> None:
        sims = qs[rows] @ sub.T  # (b, m)
        m = sims.shape[1]
        kk = min(k, m)
        if kk == 0:
            return
        # argpartition finds the k best quickly; lexsort then orders them by (-sim, index).
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk] if kk < m else None
        for bi, qi in enumerate(np.arange(nq)[rows]):
            local = part[bi] if part is not None else np.arange(m)
            s = sims[bi, local]
            ids = local if cand is None else cand[local]
            order = np.lexsort((ids, -s))
            out_idx[qi, :kk] = ids[order]
            out_sim[qi, :kk] = s[order]

    if candidates is None:
        everything = normalize(data)
        for b in range(0, nq, block):
            topk_into(slice(b, b + block), everything, None)
    elif isinstance(candidates, np.ndarray) and candidates.ndim == 1 and candidates.dtype != object:
        cand = candidates.astype(np.int64, copy=False)
        sub = normalize(data[cand])
        for b in range(0, nq, block):
            topk_into(slice(b, b + block), sub, cand)
    else:
        per_query = list(candidates)  # type: ignore[arg-type]
        if len(per_query) != nq:
            raise ValueError("need one candidate array per query")
        for qi, c in enumerate(per_query):
            cand = np.asarray(c, dtype=np.int64)
            topk_into(np.array([qi]), normalize(data[cand]), cand)
    return out_idx, out_sim


def recall_at_k(
    vectors: F32,
    query: F32,
    returned: Sequence[int],
    truth_idx: I64,
    truth_sim: F32,
    *,
    eps: float = 1e-5,
) -> float:
    """Recall@k of one query's result against its exact top-k (one row of :func:`exact_topk`).

    A returned row counts as a hit if it is in the exact top-k, or if its similarity is within
    ``eps`` of the k-th best: PostgreSQL and numpy round float32 sums differently, and a near-tie
    at the boundary is as good an answer as the one numpy happened to rank k-th. ``returned`` is
    assumed to satisfy the query's filter (the SQL guarantees it). No matching rows: recall is 1.
    """
    valid = truth_idx[truth_idx >= 0]
    kk = len(valid)
    if kk == 0:
        return 1.0
    kth = float(truth_sim[kk - 1])
    truth = set(valid.tolist())
    q = normalize(np.asarray(query, dtype=np.float32))
    hits = 0
    for r in list(dict.fromkeys(returned))[:kk]:
        if r in truth or float(vectors[r] @ q) >= kth - eps:
            hits += 1
    return hits / kk


# --------------------------------------------------------------------------------------------
# Query sets


@dataclass
class QuerySet:
    """Held-out queries with one filter shape, and their exact top-k over the base rows."""

    name: str  # "unfiltered", "agent", "user@0.1%"
    column: str | None  # the filtered column, None for unfiltered
    values: list[str]  # filter value of each query ("" when unfiltered)
    vectors: F32  # (q, dim)
    truth_idx: I64  # (q, k)
    truth_sim: F32  # (q, k)
    matching: I64  # (q,) rows matching each query's filter
    n_rows: int
    target: float | None = None  # the selectivity this bucket aims at

    def __len__(self) -> int:
        return len(self.values)

    @property
    def selectivity(self) -> float:
        """Mean fraction of the rows that match the filter, over the queries."""
        return float(self.matching.mean() / self.n_rows) if len(self.matching) else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "column": self.column,
            "queries": len(self),
            "distinct_values": len(set(self.values)),
            "target_selectivity": self.target,
            "selectivity": self.selectivity,
            "matching_rows_min": int(self.matching.min()) if len(self) else 0,
            "matching_rows_max": int(self.matching.max()) if len(self) else 0,
        }


def format_pct(fraction: float) -> str:
    """0.0001 -> "0.01%", 0.1 -> "10%": short, for bucket names and tables."""
    pct = fraction * 100
    return f"{pct:.3g}%" if pct < 1 else f"{pct:.0f}%"


def _pick_values(counts: I64, n_rows: int, target: float, limit: int) -> list[int]:
    """Up to ``limit`` values whose share of the rows is within 2x of ``target``, closest first."""
    share = counts / n_rows
    ok = np.flatnonzero((counts > 0) & (share >= target / 2) & (share <= target * 2))
    if len(ok) == 0:
        return []
    dist = np.abs(np.log(share[ok] / target))
    return [int(v) for v in ok[np.lexsort((ok, dist))][:limit]]


def make_query_sets(
    universe: Universe,
    base: Memories,
    *,
    n_unfiltered: int,
    n_filtered: int,
    k: int = 10,
    values_per_bucket: int = 8,
) -> list[QuerySet]:
    """The standard query sets: unfiltered, one agent, and one user at each target selectivity.

    Each query's vector is a fresh point (not in the data) around the cluster of a random row
    that matches the query's filter, so queries follow the filtered subset's own distribution.
    """
    spec = universe.spec
    n = len(base)
    buckets: list[tuple[str, str | None, list[int], float | None]] = [
        ("unfiltered", None, [-1], 1.0)
    ]
    agents = np.random.default_rng([spec.seed, 2]).permutation(spec.n_agents)[:values_per_bucket]
    buckets.append(("agent", "agent_id", [int(a) for a in agents], 1.0 / spec.n_agents))
    user_counts = np.bincount(base.user, minlength=spec.n_users)
    for share in USER_SELECTIVITIES:
        picked = _pick_values(user_counts, n, share, values_per_bucket)
        if picked:
            buckets.append((f"user@{format_pct(share)}", "user_id", picked, share))

    sets = []
    for b, (name, column, values, target) in enumerate(buckets):
        rng = np.random.default_rng([spec.seed, 3, b])
        count = n_unfiltered if column is None else n_filtered
        col = {None: None, "agent_id": base.agent, "user_id": base.user}[column]
        rows_of = {v: (np.arange(n) if col is None else np.flatnonzero(col == v)) for v in values}
        chosen = [values[i % len(values)] for i in range(count)]
        anchors = np.array([rows_of[v][rng.integers(0, len(rows_of[v]))] for v in chosen])
        qv = universe.sample_points(base.cluster[anchors], rng)
        truth_idx = np.full((count, k), -1, dtype=np.int64)
        truth_sim = np.full((count, k), -np.inf, dtype=np.float32)
        chosen_arr = np.array(chosen)
        for v in values:  # one gather + matmul per distinct filter value
            qi = np.flatnonzero(chosen_arr == v)
            cand = None if col is None else rows_of[v]
            idx, sim = exact_topk(base.vectors, qv[qi], k, cand)
            truth_idx[qi], truth_sim[qi] = idx, sim
        name_of = {"agent_id": agent_name, "user_id": user_name}
        sets.append(
            QuerySet(
                name=name,
                column=column,
                values=[name_of[column](v) for v in chosen] if column else [""] * count,
                vectors=qv,
                truth_idx=truth_idx,
                truth_sim=truth_sim,
                matching=np.array([len(rows_of[v]) for v in chosen], dtype=np.int64),
                n_rows=n,
                target=target,
            )
        )
    return sets


# --------------------------------------------------------------------------------------------
# The whole workload


@dataclass
class Workload:
    """Base rows (what gets searched), extra rows (for ingest-into-a-full-table) and queries."""

    spec: WorkloadSpec
    universe: Universe
    base: Memories
    extra: Memories
    query_sets: list[QuerySet]
    k: int
    _row_of_id: dict[uuid.UUID, int] = field(default_factory=dict, repr=False)

    def row_of(self, memory_id: uuid.UUID) -> int:
        """Workload row index of a base-row id (as generated here)."""
        if not self._row_of_id:
            self._row_of_id = {m: i for i, m in enumerate(self.base.ids)}
        return self._row_of_id[memory_id]

    def query_set(self, name: str) -> QuerySet:
        for qs in self.query_sets:
            if qs.name == name:
                return qs
        raise KeyError(name)

    def recall(self, qs: QuerySet, i: int, returned_rows: Sequence[int]) -> float:
        """Recall@k of query ``i`` of ``qs``, given the workload row indices it returned."""
        return recall_at_k(
            self.base.vectors, qs.vectors[i], returned_rows, qs.truth_idx[i], qs.truth_sim[i]
        )

    def summary(self) -> dict[str, Any]:
        s = self.spec
        user_counts = np.bincount(self.base.user, minlength=s.n_users)
        return {
            "n": len(self.base),
            "extra_rows": len(self.extra),
            "dim": s.dim,
            "seed": s.seed,
            "k": self.k,
            "clusters": s.n_clusters,
            "agents": s.n_agents,
            "users": s.n_users,
            "user_zipf_s": s.zipf_s,
            "largest_user_share": float(user_counts.max() / len(self.base)),
            "smallest_user_share": float(user_counts[user_counts > 0].min() / len(self.base)),
            "query_sets": [qs.summary() for qs in self.query_sets],
        }


def generate(
    spec: WorkloadSpec,
    *,
    extra: int = 0,
    n_unfiltered: int = 200,
    n_filtered: int = 100,
    k: int = 10,
) -> Workload:
    """Generate the whole workload. Base rows span 2025; extra rows follow, in early 2026."""
    universe = Universe.create(spec)
    base = generate_memories(universe, spec.n, stream=0, start=EPOCH, span=YEAR)
    more = generate_memories(
        universe, extra, stream=1, start=EPOCH + YEAR, span=timedelta(days=7), offset=spec.n
    )
    sets = make_query_sets(universe, base, n_unfiltered=n_unfiltered, n_filtered=n_filtered, k=k)
    return Workload(spec, universe, base, more, sets, k)
