"""A real uvicorn server on 127.0.0.1 and a random port, in a thread, for HTTP tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import uvicorn

from engramdb import Settings
from engramdb.server import create_app

TEST_DIMENSIONS = 64


def server_settings(pg_url: str, **changes: Any) -> Settings:
    """A server on the test database, with the deterministic embedder of the test template."""
    base = Settings(
        database_url=pg_url,
        embedder="hash",
        embedding_dimensions=TEST_DIMENSIONS,
        pool_min_size=1,
        pool_max_size=4,
        jwt_secret="test-jwt-secret-with-at-least-32-bytes!",
    )
    return base.with_(**changes) if changes else base


class LiveServer:
    """``with LiveServer(app) as server: server.url``; stopping runs the app's shutdown."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def admin_key(app: Any, organization: str = "default") -> str:
    """An unlimited admin key of ``organization`` (of the home organization: an operator)."""
    _key, secret = app.state.engramdb.keys.create(
        organization, name="test admin", scopes=["read", "write", "admin"], tier="enterprise"
    )
    return str(secret)


def start_http_backend(pg_url: str, **settings: Any) -> tuple[LiveServer, str]:
    app = create_app(server_settings(pg_url, **settings))
    server = LiveServer(app).start()
    return server, admin_key(app)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """``engramdb serve`` in a subprocess (its own process group), stopped with SIGTERM.

    ``env`` adds to the environment (ENGRAMDB_*); the test embedder is the default.
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ["serve", "--host", "127.0.0.1", "--port", str(self.port), *args]
        self.env = {
            **os.environ,
            "ENGRAMDB_EMBEDDER": "hash",
            "ENGRAMDB_EMBEDDING_DIMENSIONS": str(TEST_DIMENSIONS),
            "ENGRAMDB_POOL_MAX_SIZE": "4",
            **(env or {}),
        }
        self.proc: subprocess.Popen[str] | None = None
        self.output = ""

    def start(self, timeout: float = 90.0) -> ServeProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engramdb.cli.main", *self.args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        # Drain the output as it comes, so a chatty server never blocks on a full pipe.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise RuntimeError(
                    f"engramdb serve exited ({self.proc.returncode}):\n{self.output}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"engramdb serve did not become ready:\n{self.output}")

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output += line

    def stop(self, timeout: float = 30.0) -> str:
        """Stop the server (SIGTERM, as a service manager would); returns everything it printed."""
        if self.proc is None:
            return self.output
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.output

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
