"""The engine: one store, one embedder, settings and background helpers, shared by all views."""

from __future__ import annotations

import functools
import hashlib
import struct
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from ..embeddings.base import Embedder, Vectors
from ..errors import DimensionMismatch, EmbeddingError, EngramError, InvalidInput
from ..settings import Settings
from ..store.base import Store
from .access import AccessRecorder

__all__ = ["Engine", "content_hash", "invalid_from_validation"]


def content_hash(content: str) -> str:
    """Hash of the normalised content: the same text in another Unicode form or with other
    surrounding whitespace is the same memory."""
    normal = unicodedata.normalize("NFC", content).strip()
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=8)
def _packer(dimensions: int) -> struct.Struct:
    return struct.Struct(f"={dimensions}f")


def _packed(values: list[Any]) -> np.ndarray | None:
    """A list of numbers as float32, packed by struct: at 384 floats about twice as fast as
    ``np.asarray``, and vectors given as JSON lists are most of an import's rows. ``None``
    where struct refuses an element (text, a nested list, a number beyond float32), for
    ``np.asarray`` to read or refuse as before; both round a float as a C cast does."""
    buf = bytearray(4 * len(values))  # writable, as np.asarray's result is
    try:
        _packer(len(values)).pack_into(buf, 0, *values)
    except (struct.error, OverflowError):
        return None
    return np.frombuffer(buf, dtype=np.float32)


def invalid_from_validation(exc: ValidationError, what: str = "input") -> InvalidInput:
    """Turn pydantic's errors into one InvalidInput naming each bad field."""
    problems = [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
    ]
    first = problems[0] if problems else {"field": "?", "message": "invalid"}
    return InvalidInput(
        f"invalid {what}: {first['field']}: {first['message']}", details={"errors": problems}
    )


@dataclass
class Engine:
    """Everything a service needs; created by :func:`engramdb.connect`, closed with it."""

    store: Store
    embedder: Embedder
    settings: Settings
    access: AccessRecorder = field(init=False)
    #: Agents' memory configuration, read by every add and search naming an agent, remembered
    #: for ``settings.agent_config_cache_seconds`` (see service.people.load_agent_config).
    config_cache: dict[tuple[str, str], tuple[float, Any]] = field(default_factory=dict)
    #: Per organization: (expiry, every configured agent's configuration, or ``None`` when it
    #: has too many to hold and ``config_cache`` is used per agent).
    config_snapshots: dict[str, tuple[float, Any]] = field(default_factory=dict)
    _closers: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.access = AccessRecorder(self.store)

    @property
    def dimensions(self) -> int:
        return int(self.embedder.dimensions)

    def check_vector(
        self, vector: Sequence[float] | np.ndarray, what: str = "embedding"
    ) -> Vectors:
        """A caller's vector as float32, refused loudly if it does not fit the embedding space."""
        arr = _packed(vector) if type(vector) is list else None
        if arr is None:
            try:
                # A number beyond float32's range becomes an infinity, refused below; numpy's
                # warning about the cast would only repeat that.
                with np.errstate(over="ignore"):
                    arr = np.asarray(vector, dtype=np.float32)
            except (TypeError, ValueError):
                raise InvalidInput(f"{what} must be a list of numbers") from None
        if arr.ndim != 1:
            raise InvalidInput(f"{what} must be a flat list of numbers")
        if arr.shape[0] != self.dimensions:
            raise DimensionMismatch(
                f"{what} has {arr.shape[0]} dimensions but the embedding space "
                f"{self.embedder.model!r} has {self.dimensions}",
                details={
                    "expected": self.dimensions,
                    "got": int(arr.shape[0]),
                    "model": self.embedder.model,
                },
            )
        if not np.all(np.isfinite(arr)):
            raise InvalidInput(
                f"{what} contains NaN or infinite values (or numbers beyond float32's range)"
            )
        return arr

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return self._checked(self.embedder.embed_documents, texts)

    def embed_query(self, text: str) -> Vectors:
        row: Vectors = self._checked(self.embedder.embed_queries, [text])[0]
        return row

    def _checked(self, fn: Any, texts: Sequence[str]) -> Vectors:
        try:
            out: Vectors = np.asarray(fn(list(texts)), dtype=np.float32)
        except EngramError:
            raise
        except Exception as exc:  # a provider's own exception types stop here
            raise EmbeddingError(f"the embedder failed: {exc}") from exc
        if out.shape != (len(texts), self.dimensions):
            raise DimensionMismatch(
                f"the embedder returned vectors of shape {out.shape}, expected "
                f"({len(texts)}, {self.dimensions})"
            )
        return out

    def close(self) -> None:
        self.access.close()
        for closer in reversed(self._closers):
            closer()
        self.store.close()
