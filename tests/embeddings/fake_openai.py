"""A real, tiny OpenAI-compatible embeddings server on 127.0.0.1, for testing OpenAIEmbedder.

It speaks HTTP over a socket (stdlib ``http.server``), so the client under test runs its real
httpx code path: connection handling, status codes, headers, retries and timeouts.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def fake_vector(text: str, dimensions: int) -> list[float]:
    """The deterministic vector the fake server returns for ``text``."""
    out: list[float] = []
    counter = 0
    while len(out) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        out.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    return out[:dimensions]


@dataclass
class Recorded:
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class _Failure:
    status: int
    message: str
    retry_after: str | None


@dataclass
class FakeEmbeddingsAPI:
    """Serves ``POST /v1/embeddings``; knobs are plain attributes, set them between calls."""

    default_dimensions: int = 8
    reverse: bool = True  # answer data[] in reverse order, to prove the client sorts by index
    wrong_length_at: int | None = None  # index of an input to answer with a too-short vector
    delay: float = 0.0
    requests: list[Recorded] = field(default_factory=list)
    _failures: list[_Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def fail(
        self, status: int, times: int = 1, *, message: str = "boom", retry_after: str | None = None
    ) -> None:
        """Answer the next ``times`` requests with ``status`` before serving normally again."""
        with self._lock:
            self._failures.extend(_Failure(status, message, retry_after) for _ in range(times))

    def start(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like real APIs
            timeout = 10

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                status, payload, extra = api._answer(self.path, dict(self.headers), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out and hung up is expected in tests

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _answer(
        self, path: str, headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            self.requests.append(Recorded({k.lower(): v for k, v in headers.items()}, body))
            failure = self._failures.pop(0) if self._failures else None
        if self.delay:
            time.sleep(self.delay)
        if path != "/v1/embeddings":
            return 404, {"error": {"message": f"no route {path}"}}, {}
        if failure is not None:
            extra = {"Retry-After": failure.retry_after} if failure.retry_after else {}
            return failure.status, {"error": {"message": failure.message}}, extra
        dims = int(body.get("dimensions") or self.default_dimensions)
        data = []
        for i, text in enumerate(body["input"]):
            vector = fake_vector(text, dims)
            if i == self.wrong_length_at:
                vector = vector[:-1]
            data.append({"object": "embedding", "index": i, "embedding": vector})
        if self.reverse:
            data.reverse()
        usage = {"prompt_tokens": 0, "total_tokens": 0}
        return 200, {"object": "list", "model": body.get("model"), "data": data, "usage": usage}, {}
