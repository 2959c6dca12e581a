"""CachedEmbedder: an in-memory LRU cache in front of any :class:`Embedder`.

Agents re-embed the same texts constantly (the same query, re-sent memories), and embedding is
the slowest or costliest step of a write or search. Keys are ``(model, kind, sha256(text))``:
the model so two spaces never mix, the kind because e5-style models embed queries and documents
differently, and a digest so the cache does not hold every text itself.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from engramdb.embeddings.base import Embedder, Vectors
from engramdb.errors import ConfigurationError, DimensionMismatch

__all__ = ["CachedEmbedder"]

_Key = tuple[str, str, bytes]


class CachedEmbedder:
    """``CachedEmbedder(inner, size=10_000)``: same ``model`` and ``dimensions`` as ``inner``.

    Each call looks every text up, then sends only the distinct misses to ``inner`` in one
    call. ``hits`` counts texts served without computing (including repeats within one call),
    ``misses`` counts the texts ``inner`` embedded. The lock is not held while ``inner`` runs,
    so a slow provider does not serialise callers; two callers missing the same text at once
    may both compute it, which is harmless.
    """

    def __init__(self, inner: Embedder, size: int = 10_000) -> None:
        if size < 1:
            raise ConfigurationError(f"embedding cache size must be >= 1, got {size}")
        self.inner = inner
        self._size = size
        self._entries: OrderedDict[_Key, Vectors] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def dimensions(self) -> int:
        return self.inner.dimensions

    @property
    def hits(self) -> int:
        return self._hits

    @property
    def misses(self) -> int:
        return self._misses

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def close(self) -> None:
        """Close the inner embedder if it holds resources (an HTTP client)."""
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return self._embed(texts, "document", self.inner.embed_documents)

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return self._embed(texts, "query", self.inner.embed_queries)

    def _embed(
        self, texts: Sequence[str], kind: str, compute: Callable[[Sequence[str]], Vectors]
    ) -> Vectors:
        model = self.inner.model
        keys = [(model, kind, hashlib.sha256(t.encode("utf-8")).digest()) for t in texts]
        found: dict[_Key, Vectors] = {}
        missing: dict[_Key, str] = {}  # distinct misses, in first-seen order
        with self._lock:
            for key, text in zip(keys, texts, strict=True):
                vector = self._entries.get(key)
                if vector is not None:
                    self._entries.move_to_end(key)
                    found[key] = vector
                elif key not in missing:
                    missing[key] = text
            self._misses += len(missing)
            self._hits += len(texts) - len(missing)
        if missing:
            computed = compute(list(missing.values()))
            if computed.ndim != 2 or computed.shape[0] != len(missing):
                raise DimensionMismatch(
                    f"embedder {model!r} returned shape {computed.shape} for {len(missing)} texts"
                )
            with self._lock:
                for key, vector in zip(missing, computed, strict=True):
                    # A private read-only copy: callers may mutate what we return to them.
                    stored = np.array(vector, dtype=np.float32)
                    stored.flags.writeable = False
                    found[key] = stored
                    self._entries[key] = stored
                    self._entries.move_to_end(key)
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)
        if not texts:
            return np.zeros((0, self.inner.dimensions), dtype=np.float32)
        return np.stack([found[key] for key in keys]).astype(np.float32, copy=False)
