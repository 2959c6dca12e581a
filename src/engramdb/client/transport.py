"""The sync client's HTTP/1.1 connections: the standard library's ``http.client`` and a small
pool of keep-alive connections.

Why not httpx here: a request through ``httpx.Client`` cost about 0.9 ms of client time on the
benchmark machine (2 cores) against 0.37 ms through ``http.client`` to the same server, which
is a fifth of a small search over HTTP; its HTTP/1.1 parser and its request and response models
are pure Python. The async client, a caller's own ``transport=``, and servers reached through a
proxy (which httpx configures from the environment) stay on httpx (``client.remote``).

The pool has httpx's behaviour where the client relies on it: one connection per request in
flight, so one client serves many threads; idle connections are kept for reuse, and one the
server has closed meanwhile (uvicorn closes idle ones after 5 s) is noticed before it is used
and replaced; the timeout applies to connecting and to each read and write; TLS is verified
against certifi's roots (httpx's default), or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from email.message import Message
from typing import Any, Protocol

__all__ = ["ConnectionPool", "HttpReply", "Reply", "uses_proxy"]

#: Idle connections kept per client; more can be open while that many requests are in flight.
MAX_IDLE = 16


class HttpReply(Protocol):
    """What the client reads of a response: an ``httpx.Response`` or a :class:`Reply`."""

    @property
    def status_code(self) -> int: ...
    @property
    def content(self) -> bytes: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


class Reply:
    """A response, read whole: what ``client.remote`` and ``client.calls`` need of one (the same
    attributes as an ``httpx.Response``)."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, content: bytes, headers: Message) -> None:
        self.status_code = status_code
        self.content = content
        self.headers = headers

    @property
    def text(self) -> str:
        charset = self.headers.get_content_charset() or "utf-8"
        return self.content.decode(charset, errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


def uses_proxy(url: str) -> bool:
    """Whether the environment routes ``url`` through a proxy (``HTTP_PROXY``, ``NO_PROXY``, …)."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


def _tls_context() -> ssl.SSLContext:
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(
            cafile=os.environ.get("SSL_CERT_FILE"), capath=os.environ.get("SSL_CERT_DIR")
        )
    try:
        import certifi  # installed with httpx
    except ImportError:  # pragma: no cover - httpx depends on it
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def _query_value(value: Any) -> str:
    # As httpx writes query parameters: JSON's spelling of booleans, nothing for None.
    if value is True:
        return "true"
    if value is False:
        return "false"
    return "" if value is None else str(value)


class ConnectionPool:
    """``request(method, path, params=, content=, headers=)`` against ``base_url``; safe to use
    from several threads at once."""

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout: float) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._headers = dict(headers)
        self._timeout = timeout
        self._tls = _tls_context() if self._https else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self.is_closed = False

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        target = self._prefix + path
        if params:
            items = params.items() if isinstance(params, Mapping) else params
            pairs = [
                (k, _query_value(item))
                for k, v in items
                for item in (v if isinstance(v, list | tuple) else [v])
            ]
            target += "?" + urllib.parse.urlencode(pairs)
        conn = self._take()
        try:
            conn.request(method, target, body=content, headers={**self._headers, **(headers or {})})
            response = conn.getresponse()
            data = response.read()
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            self._give(conn)
        return Reply(response.status, data, response.msg)

    def _take(self) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                if self.is_closed:
                    raise http.client.HTTPException("the client is closed")
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect()
            if conn.sock is not None and not _readable(conn.sock):
                return conn
            # Readable while idle: the server closed it (or broke the protocol). Not reused.
            conn.close()

    def _give(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self.is_closed and len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._tls is not None:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._tls
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        conn.connect()
        # Every POST has a body; should it ever go in a second write, Nagle's algorithm would
        # hold it until the server acknowledged the headers (a delayed ACK: up to 40 ms).
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def idle_sockets(self) -> list[socket.socket]:
        """The sockets of the idle connections (for tests and diagnostics)."""
        with self._lock:
            return [c.sock for c in self._idle if c.sock is not None]

    def close(self) -> None:
        with self._lock:
            self.is_closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _readable(sock: socket.socket) -> bool:
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True  # closed under us: not reusable either
    return bool(ready)
