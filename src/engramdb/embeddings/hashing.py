"""HashEmbedder: a deterministic, dependency-free embedder for tests, demos and CI.

It is a "hashing trick" bag of words: every lowercased word, and every character trigram of every
word, is hashed with BLAKE2b into one of ``dimensions`` buckets with a sign taken from the hash.
Texts that share words (or word fragments) therefore share buckets and have a clearly higher
cosine similarity than unrelated texts; the result is L2-normalised. BLAKE2b rather than
``hash()`` because Python salts ``hash()`` per process, and stored vectors must stay comparable
across processes and machines.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from engramdb.embeddings.base import Vectors
from engramdb.errors import ConfigurationError

__all__ = ["HashEmbedder"]

_WORD = re.compile(r"\w+", re.UNICODE)
# Whole words carry most of the signal; trigrams only soften near misses (plural, typo, inflection).
_WORD_WEIGHT = 1.0
_TRIGRAM_WEIGHT = 0.35
# A text with no word characters still needs a non-zero vector: a zero vector has no cosine.
_EMPTY_FEATURE = "\x00empty"


@lru_cache(maxsize=65_536)
def _bucket(feature: str, dimensions: int) -> tuple[int, float]:
    """(bucket, sign) of a feature; cached because the same words recur across texts."""
    digest = hashlib.blake2b(
        feature.encode("utf-8"), digest_size=8, person=b"engramdb-hash"
    ).digest()
    value = int.from_bytes(digest, "little")
    sign = 1.0 if value >> 63 else -1.0
    return value % dimensions, sign


def _features(text: str) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for word in _WORD.findall(text.lower()):
        out.append(("w:" + word, _WORD_WEIGHT))
        padded = f"<{word}>"
        out.extend(("t:" + padded[i : i + 3], _TRIGRAM_WEIGHT) for i in range(len(padded) - 2))
    return out or [(_EMPTY_FEATURE, 1.0)]


class HashEmbedder:
    """Deterministic bag-of-words embedder; documents and queries are embedded alike.

    ``HashEmbedder(dimensions=64)``; ``model`` is ``f"hash-{dimensions}"``.
    """

    def __init__(self, dimensions: int = 64) -> None:
        if dimensions < 1:
            raise ConfigurationError(f"hash embedder dimensions must be >= 1, got {dimensions}")
        self._dimensions = dimensions

    @property
    def model(self) -> str:
        return f"hash-{self._dimensions}"

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return self._embed(texts)

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return self._embed(texts)

    def _embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self._dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature, weight in _features(text):
                bucket, sign = _bucket(feature, self._dimensions)
                out[row, bucket] += sign * weight
            norm = float(np.linalg.norm(out[row]))
            # Signed features can cancel out exactly; keep such a row non-zero and normalisable.
            if norm == 0.0:
                out[row, _bucket(_EMPTY_FEATURE, self._dimensions)[0]] = 1.0
                norm = 1.0
            out[row] /= norm
        return out
