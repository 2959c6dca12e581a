"""OpenAIEmbedder against a real local HTTP server: batching, ordering, retries, errors."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import numpy as np
import pytest

from engramdb.embeddings import OpenAIEmbedder
from engramdb.errors import ConfigurationError, DimensionMismatch, EmbeddingError

from .fake_openai import FakeEmbeddingsAPI, fake_vector

KEY = "sk-test-secret-123"


@pytest.fixture
def embedder(fake_api: FakeEmbeddingsAPI) -> Iterator[OpenAIEmbedder]:
    with OpenAIEmbedder(
        "fake-model",
        base_url=fake_api.base_url,
        api_key=KEY,
        dimensions=8,
        batch_size=3,
        backoff=0.01,
        timeout=2.0,
    ) as e:
        yield e


def test_batches_and_orders_by_index(embedder: OpenAIEmbedder, fake_api: FakeEmbeddingsAPI) -> None:
    texts = [f"text number {i}" for i in range(7)]
    vectors = embedder.embed_documents(texts)

    assert vectors.shape == (7, 8)
    assert vectors.dtype == np.float32
    # The server answers each batch in reverse order; the client must restore input order.
    expected = np.array([fake_vector(t, 8) for t in texts], dtype=np.float32)
    np.testing.assert_allclose(vectors, expected)
    assert [len(r.body["input"]) for r in fake_api.requests] == [3, 3, 1]


def test_request_shape_and_auth_header(
    embedder: OpenAIEmbedder, fake_api: FakeEmbeddingsAPI
) -> None:
    embedder.embed_queries(["hello"])

    (request,) = fake_api.requests
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body == {"model": "fake-model", "input": ["hello"], "dimensions": 8}


def test_no_auth_header_without_key_and_prefixes(fake_api: FakeEmbeddingsAPI) -> None:
    with OpenAIEmbedder(
        "m", base_url=fake_api.base_url, query_prefix="query: ", document_prefix="passage: "
    ) as e:
        e.embed_queries(["q"])
        e.embed_documents(["d"])

    assert "authorization" not in fake_api.requests[0].headers
    assert [r.body["input"] for r in fake_api.requests] == [["query: q"], ["passage: d"]]


def test_dimensions_learned_from_first_response(fake_api: FakeEmbeddingsAPI) -> None:
    fake_api.default_dimensions = 5
    with OpenAIEmbedder("m", base_url=fake_api.base_url) as e:
        assert e.embed_documents(["a", "b"]).shape == (2, 5)
        assert e.dimensions == 5
    assert len(fake_api.requests) == 1
    assert "dimensions" not in fake_api.requests[0].body  # not configured, so not sent


def test_dimensions_probe_when_read_first(fake_api: FakeEmbeddingsAPI) -> None:
    fake_api.default_dimensions = 6
    with OpenAIEmbedder("m", base_url=fake_api.base_url) as e:
        assert e.dimensions == 6
        assert e.embed_queries([]).shape == (0, 6)
    assert len(fake_api.requests) == 1


def test_send_dimensions_false(fake_api: FakeEmbeddingsAPI) -> None:
    with OpenAIEmbedder("m", base_url=fake_api.base_url, dimensions=8, send_dimensions=False) as e:
        e.embed_documents(["a"])
    assert "dimensions" not in fake_api.requests[0].body


def test_empty_input_sends_nothing(embedder: OpenAIEmbedder, fake_api: FakeEmbeddingsAPI) -> None:
    assert embedder.embed_documents([]).shape == (0, 8)
    assert fake_api.requests == []


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retries_then_succeeds(
    embedder: OpenAIEmbedder, fake_api: FakeEmbeddingsAPI, status: int
) -> None:
    fake_api.fail(status, times=2)
    vectors = embedder.embed_documents(["x"])
    np.testing.assert_allclose(vectors[0], np.array(fake_vector("x", 8), dtype=np.float32))
    assert len(fake_api.requests) == 3


def test_honours_retry_after(embedder: OpenAIEmbedder, fake_api: FakeEmbeddingsAPI) -> None:
    fake_api.fail(429, retry_after="0.3")
    start = time.monotonic()
    embedder.embed_documents(["x"])
    assert time.monotonic() - start >= 0.3
    assert len(fake_api.requests) == 2


def test_persistent_failure_raises_after_three_attempts(
    embedder: OpenAIEmbedder, fake_api: FakeEmbeddingsAPI
) -> None:
    fake_api.fail(500, times=10, message="model overloaded")
    with pytest.raises(EmbeddingError) as info:
        embedder.embed_documents(["x"])
    assert len(fake_api.requests) == 3
    assert "500" in info.value.message and "model overloaded" in info.value.message
    assert info.value.details["status"] == 500


def test_client_error_is_not_retried_and_key_is_scrubbed(
    embedder: OpenAIEmbedder, fake_api: FakeEmbeddingsAPI
) -> None:
    fake_api.fail(401, message=f"Incorrect API key provided: {KEY}")
    with pytest.raises(EmbeddingError) as info:
        embedder.embed_documents(["x"])
    assert len(fake_api.requests) == 1
    assert "401" in info.value.message
    assert KEY not in str(info.value) and KEY not in repr(info.value)


def test_wrong_length_vector_raises_dimension_mismatch(
    embedder: OpenAIEmbedder, fake_api: FakeEmbeddingsAPI
) -> None:
    fake_api.wrong_length_at = 1
    with pytest.raises(DimensionMismatch) as info:
        embedder.embed_documents(["a", "b"])
    assert info.value.details == {"expected": 8, "got": 7, "model": "fake-model"}


def test_connection_refused_is_retried_then_embedding_error() -> None:
    with socket.socket() as s:  # a port nobody listens on once this socket is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (
        OpenAIEmbedder(
            "m", base_url=f"http://127.0.0.1:{port}/v1", dimensions=4, backoff=0.01
        ) as e,
        pytest.raises(EmbeddingError) as info,
    ):
        e.embed_documents(["x"])
    assert "unreachable" in info.value.message
    assert info.value.details["attempts"] == 3


def test_timeout_becomes_embedding_error(fake_api: FakeEmbeddingsAPI) -> None:
    fake_api.delay = 0.5
    with (
        OpenAIEmbedder(
            "m", base_url=fake_api.base_url, dimensions=8, timeout=0.1, backoff=0.01, max_attempts=2
        ) as e,
        pytest.raises(EmbeddingError, match="Timeout"),
    ):
        e.embed_documents(["x"])


def test_bad_configuration() -> None:
    with pytest.raises(ConfigurationError):
        OpenAIEmbedder("m", base_url="ftp://example.com")
    with pytest.raises(ConfigurationError):
        OpenAIEmbedder("m", dimensions=0)
    with pytest.raises(ConfigurationError):
        OpenAIEmbedder("")
