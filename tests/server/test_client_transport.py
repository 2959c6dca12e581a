"""``client.transport``: the sync client's pool of ``http.client`` connections, against a small
local HTTP server that records what it receives and can misbehave on demand."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import engramdb
from engramdb.client.transport import ConnectionPool, uses_proxy
from engramdb.errors import Unavailable


class _Recorder(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[dict[str, Any]] = []
        self.connections: set[tuple[str, int]] = set()
        self.close_after_reply = False  # close without saying so (as an idle timeout does)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Recorder

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        self.server.connections.add(self.client_address)
        seen = {"method": self.command, "path": parts.path, "query": parse_qs(parts.query)}
        self.server.seen.append({**seen, "body": body, "headers": dict(self.headers)})
        out = json.dumps({"ok": True, "path": parts.path}).encode()
        status = 404 if parts.path.endswith("/missing") else 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
        if self.server.close_after_reply:
            self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PATCH = _reply


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    srv = _Recorder()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_requests_carry_path_query_headers_and_body(recorder: _Recorder) -> None:
    pool = ConnectionPool(recorder.url + "/base/", {"Authorization": "Bearer k"}, timeout=5)
    reply = pool.request(
        "POST", "/v1/x", params={"flag": True, "off": False, "tags": ["a", "b c"], "n": 3},
        content=b'{"a":1}', headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert reply.status_code == 200 and reply.json() == {"ok": True, "path": "/base/v1/x"}
    assert reply.text == '{"ok": true, "path": "/base/v1/x"}'
    got = recorder.seen[-1]
    assert got["method"] == "POST" and got["body"] == b'{"a":1}'
    # As httpx writes them: JSON booleans, one pair per list item.
    assert got["query"] == {"flag": ["true"], "off": ["false"], "tags": ["a", "b c"], "n": ["3"]}
    assert got["headers"]["Authorization"] == "Bearer k"
    assert got["headers"]["Content-Type"] == "application/json"
    assert pool.request("GET", "/missing").status_code == 404
    pool.close()


def test_connections_are_kept_alive_and_replaced_once_the_server_closes_them(
    recorder: _Recorder,
) -> None:
    pool = ConnectionPool(recorder.url, {}, timeout=5)
    for _ in range(5):
        assert pool.request("GET", "/a").status_code == 200
    assert len(recorder.connections) == 1  # one connection, reused
    recorder.close_after_reply = True
    for _ in range(3):
        # After each reply the server closes the connection without a word, as an idle timeout
        # does: the pool notices before reusing it and opens another (the first of these went
        # on the kept one). A server closing a connection while the request is on its way is
        # not retried, as httpx does not: the request may have been served.
        assert pool.request("GET", "/b").status_code == 200
        time.sleep(0.05)  # the server's FIN arrives while the connection is idle
    assert len(recorder.connections) == 3
    pool.close()
    assert pool.is_closed and pool.idle_sockets() == []


def test_threads_share_one_pool(recorder: _Recorder) -> None:
    pool = ConnectionPool(recorder.url, {}, timeout=5)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                assert pool.request("POST", f"/t{n}", content=str(i).encode()).status_code == 200
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(recorder.seen) == 80
    assert 1 <= len(recorder.connections) <= 4  # never more than the requests in flight
    pool.close()


def test_an_unreachable_server_and_a_closed_client_are_unavailable(recorder: _Recorder) -> None:
    url = recorder.url
    recorder.shutdown()
    recorder.server_close()
    with pytest.raises(Unavailable, match="cannot reach"):
        engramdb.connect(url, api_key="edb_test")


def test_servers_behind_a_proxy_are_reached_with_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert not uses_proxy("http://db.example:8000")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    assert uses_proxy("http://db.example:8000")
    monkeypatch.setenv("NO_PROXY", "db.example")
    assert not uses_proxy("http://db.example:8000")
