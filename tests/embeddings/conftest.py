"""Fixtures for the embedder tests: a live fake embeddings API on a random local port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fake_openai import FakeEmbeddingsAPI


@pytest.fixture
def fake_api() -> Iterator[FakeEmbeddingsAPI]:
    api = FakeEmbeddingsAPI()
    api.start()
    try:
        yield api
    finally:
        api.stop()
