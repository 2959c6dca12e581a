"""A real uvicorn server on 127.0.0.1 and a random port, in a thread, for HTTP tests."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

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
