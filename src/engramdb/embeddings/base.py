"""The Embedder protocol: what every embedding provider offers the memory service."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of ``dimensions`` floats.

    ``model`` names the embedding space: vectors are stored with it, and only vectors of the same
    model are compared. Documents and queries may be embedded differently (e5 prefixes
    ``passage:`` / ``query:``), hence two methods. Both return a float32 array of shape
    ``(len(texts), dimensions)`` and raise :class:`engramdb.errors.EmbeddingError` on failure.
    """

    @property
    def model(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> Vectors: ...

    def embed_queries(self, texts: Sequence[str]) -> Vectors: ...
