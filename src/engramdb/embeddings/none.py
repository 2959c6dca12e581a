"""NoEmbedder: the ``embedder="none"`` choice, for callers who bring their own vectors.

It names an embedding space (``model``, ``dimensions``) so stored vectors can be checked and
compared, but refuses to turn text into vectors: every write and search must then carry
``embedding=`` vectors computed by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engramdb.embeddings.base import Vectors
from engramdb.errors import ConfigurationError, InvalidInput

__all__ = ["NoEmbedder"]


class NoEmbedder:
    """``NoEmbedder(dimensions, model=None)``; ``model`` defaults to ``f"external-{dimensions}"``.

    Embedding an empty list succeeds (shape ``(0, dimensions)``), so a service can call it for
    "the items that lack a vector" without special-casing the all-supplied case.
    """

    def __init__(self, dimensions: int, model: str | None = None) -> None:
        if dimensions < 1:
            raise ConfigurationError(f"embedding dimensions must be >= 1, got {dimensions}")
        self._dimensions = dimensions
        self._model = model or f"external-{dimensions}"

    @property
    def model(self) -> str:
        return self._model

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return self._refuse(texts, "memory")

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return self._refuse(texts, "query")

    def _refuse(self, texts: Sequence[str], what: str) -> Vectors:
        if not texts:
            return np.zeros((0, self._dimensions), dtype=np.float32)
        raise InvalidInput(
            f"no embedder is configured (embedder='none'): pass embedding= with each {what}, "
            f"a list of {self._dimensions} floats from model {self._model!r}",
            details={"dimensions": self._dimensions, "model": self._model},
        )
