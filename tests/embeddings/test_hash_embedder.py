"""HashEmbedder and NoEmbedder: determinism, similarity, and the bring-your-own-vectors refusal."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from engramdb.embeddings import HashEmbedder, NoEmbedder
from engramdb.errors import ConfigurationError, InvalidInput


def test_shape_norm_and_model() -> None:
    h = HashEmbedder()
    vectors = h.embed_documents(["hello world", "", "!!!", "Ünïcode wörds"])
    assert h.model == "hash-64" and h.dimensions == 64
    assert vectors.shape == (4, 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert HashEmbedder(16).embed_queries([]).shape == (0, 16)


def test_deterministic_across_instances_and_processes() -> None:
    text = "the quick brown fox"
    here = HashEmbedder(32).embed_documents([text])[0]
    np.testing.assert_array_equal(here, HashEmbedder(32).embed_queries([text])[0])
    # A fresh interpreter has a different hash() salt; the vector must not change.
    code = (
        "from engramdb.embeddings import HashEmbedder; "
        f"print(HashEmbedder(32).embed_documents([{text!r}])[0].tobytes().hex())"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == here.tobytes().hex()


@pytest.mark.parametrize("dimensions", [64, 256])
def test_shared_words_are_clearly_more_similar(dimensions: int) -> None:
    h = HashEmbedder(dimensions)
    pairs = [
        ("the cat sat on the mat", "a cat sat on a mat", "quarterly revenue grew strongly"),
        ("user prefers dark mode", "the user likes dark mode", "flight to Lisbon on Tuesday"),
        ("meeting with Alice tomorrow", "Alice meeting moved", "install postgres extension"),
    ]
    for anchor, similar, unrelated in pairs:
        a, s, u = h.embed_documents([anchor, similar, unrelated])
        assert float(a @ s) > float(a @ u) + 0.2, (anchor, float(a @ s), float(a @ u))


def test_case_insensitive() -> None:
    h = HashEmbedder()
    a, b = h.embed_documents(["Dark Mode", "dark mode"])
    np.testing.assert_allclose(a, b)


def test_bad_dimensions() -> None:
    with pytest.raises(ConfigurationError):
        HashEmbedder(0)


def test_no_embedder_refuses_text_but_not_empty_lists() -> None:
    e = NoEmbedder(3)
    assert e.model == "external-3" and e.dimensions == 3
    assert e.embed_documents([]).shape == (0, 3)
    with pytest.raises(InvalidInput, match="embedding="):
        e.embed_documents(["some text"])
    with pytest.raises(InvalidInput, match="embedding="):
        e.embed_queries(["a query"])
    assert NoEmbedder(3, "my-model").model == "my-model"
