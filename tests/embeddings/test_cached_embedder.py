"""CachedEmbedder: hits and misses, only misses reach the inner embedder, LRU eviction."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from engramdb.embeddings import CachedEmbedder, Embedder, HashEmbedder, Vectors
from engramdb.errors import ConfigurationError


class RecordingEmbedder:
    """A real HashEmbedder that also records what it was asked to embed."""

    def __init__(self) -> None:
        self._inner = HashEmbedder(16)
        self.calls: list[tuple[str, list[str]]] = []

    @property
    def model(self) -> str:
        return self._inner.model

    @property
    def dimensions(self) -> int:
        return self._inner.dimensions

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(("document", list(texts)))
        return self._inner.embed_documents(texts)

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(("query", list(texts)))
        # Differ from documents, so a kind mix-up in the cache would show.
        return -self._inner.embed_queries(texts)


def test_only_misses_reach_inner() -> None:
    inner = RecordingEmbedder()
    cache = CachedEmbedder(inner, size=100)
    assert isinstance(cache, Embedder)

    first = cache.embed_documents(["a", "b"])
    second = cache.embed_documents(["a", "c", "c", "b"])

    assert inner.calls == [("document", ["a", "b"]), ("document", ["c"])]
    assert (cache.hits, cache.misses) == (3, 3)  # a, b and the repeated c were not computed
    np.testing.assert_array_equal(second, HashEmbedder(16).embed_documents(["a", "c", "c", "b"]))
    np.testing.assert_array_equal(second[[0, 3]], first)
    assert cache.model == "hash-16" and cache.dimensions == 16


def test_queries_and_documents_are_cached_apart() -> None:
    inner = RecordingEmbedder()
    cache = CachedEmbedder(inner)
    doc = cache.embed_documents(["x"])
    query = cache.embed_queries(["x"])
    assert len(inner.calls) == 2 and cache.misses == 2
    np.testing.assert_array_equal(query, -doc)
    np.testing.assert_array_equal(cache.embed_queries(["x"]), query)
    assert cache.hits == 1


def test_lru_eviction() -> None:
    inner = RecordingEmbedder()
    cache = CachedEmbedder(inner, size=2)
    cache.embed_documents(["a", "b"])
    cache.embed_documents(["a"])  # a is now the most recent
    cache.embed_documents(["c"])  # evicts b
    assert len(cache) == 2
    inner.calls.clear()
    cache.embed_documents(["a", "b", "c"])
    assert inner.calls == [("document", ["b"])]


def test_returned_arrays_do_not_alias_the_cache() -> None:
    cache = CachedEmbedder(HashEmbedder(8))
    out = cache.embed_documents(["a"])
    expected = out.copy()
    out[:] = 0.0
    np.testing.assert_array_equal(cache.embed_documents(["a"]), expected)


def test_empty_input() -> None:
    cache = CachedEmbedder(HashEmbedder(8))
    assert cache.embed_queries([]).shape == (0, 8)
    assert (cache.hits, cache.misses) == (0, 0)


def test_threads() -> None:
    cache = CachedEmbedder(HashEmbedder(32), size=50)
    texts = [f"text {i % 80}" for i in range(400)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda t: cache.embed_documents([t])[0], texts))
    np.testing.assert_array_equal(np.stack(results), HashEmbedder(32).embed_documents(texts))
    assert cache.hits + cache.misses == 400 and len(cache) <= 50


def test_bad_size() -> None:
    with pytest.raises(ConfigurationError):
        CachedEmbedder(HashEmbedder(), size=0)
