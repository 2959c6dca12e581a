"""``engramdb serve``: the first start makes (and prints once) an admin key; real processes with
``--workers``, on the embedded database in a fresh data directory."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from engramdb.cli.main import main
from engramdb.cli.serve_cmd import _bootstrap
from engramdb.server import create_app
from engramdb.service.keys import hash_secret

from .conftest import bearer, owner_rows
from .live import ServeProcess, server_settings

KEY = re.compile(r"\bedb_[a-z2-7]{8}_[A-Za-z0-9_-]{20,}")


def test_first_start_makes_one_admin_key_and_only_once(pg_url: str) -> None:
    settings = server_settings(pg_url)
    secret = _bootstrap(settings)
    assert secret is not None and KEY.fullmatch(secret)
    assert _bootstrap(settings) is None  # a second start makes none
    [row] = owner_rows(pg_url, "SELECT * FROM api_keys")
    assert row["organization_id"] == "default" and row["scopes"] == ["read", "write", "admin"]
    assert row["key_hash"] == hash_secret(secret)
    assert row["rate_limit"] is None and row["monthly_quota"] is None
    app = create_app(settings)
    try:
        info = TestClient(app).get("/v1/info", headers=bearer(secret)).json()
        assert info["organization"] == "default" and "admin" in info["scopes"]
    finally:
        app.state.engramdb.close()


def test_no_bootstrap_key_when_some_key_exists(pg_url: str) -> None:
    app = create_app(server_settings(pg_url))
    try:
        app.state.engramdb.keys.create("acme", name="existing")
    finally:
        app.state.engramdb.close()
    assert _bootstrap(server_settings(pg_url)) is None
    assert len(owner_rows(pg_url, "SELECT 1 FROM api_keys")) == 1


def test_serve_refuses_bad_options(capsys: pytest.CaptureFixture[str], pg_url: str) -> None:
    assert main(["--database-url", pg_url, "serve", "--workers", "0"]) == 1
    assert "--workers must be at least 1" in capsys.readouterr().err
    assert owner_rows(pg_url, "SELECT 1 FROM api_keys") == []


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not tmp_path: the embedded server may run as another user, who needs to enter it.
    path = Path(tempfile.mkdtemp(prefix="engramdb-serve-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _stopped(data_dir: Path, timeout: float = 20.0) -> bool:
    """The embedded PostgreSQL of ``data_dir`` has shut down (its pid file is gone)."""
    deadline = time.monotonic() + timeout
    pid_file = data_dir / "pg" / "postmaster.pid"
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return not pid_file.exists()


@pytest.mark.slow
def test_serve_with_workers_on_a_fresh_embedded_database(data_dir: Path) -> None:
    env = {"ENGRAMDB_DATA_DIR": str(data_dir)}
    server = ServeProcess("--workers", "2", env=env).start()
    try:
        out = server.output
        assert f"listening on {server.url}" in out
        assert "Authorization: Bearer" in out
        secrets = KEY.findall(out)
        assert len(secrets) == 1, out
        h = bearer(secrets[0])
        with httpx.Client(base_url=server.url, headers=h, timeout=30) as http:
            info = http.get("/v1/info").json()
            assert info["organization"] == "default" and "admin" in info["scopes"]
            made = http.post("/v1/memories", json={"content": "Alice prefers window seats"})
            assert made.status_code == 201
            for _ in range(6):  # fresh connections, spread over the workers
                hits = http.post("/v1/memories/search", headers={"Connection": "close"},
                                 json={"query": "window seats"}).json()  # fmt: skip
                assert hits["results"][0]["memory"]["id"] == made.json()["id"]
            assert http.get("/openapi.json").status_code == 200
            assert http.get("/healthz").json() == {"status": "ok"}
        # Two worker processes served.
        assert len(set(re.findall(r"Started server process \[(\d+)\]", server.output))) == 2
    finally:
        out = server.stop()
    assert server.proc is not None and server.proc.returncode == 0, out
    # Every process left: the embedded PostgreSQL stopped with the server.
    assert _stopped(data_dir), out
    assert json.loads((data_dir / "pg" / ".handle_pids.json").read_text()) == []

    # A second start keeps the data and the key, and prints no new key.
    with ServeProcess(env=env) as again:
        assert "First start" not in again.output and KEY.search(again.output) is None
        with httpx.Client(base_url=again.url, headers=h, timeout=30) as http:
            assert len(http.get("/v1/keys").json()["items"]) == 1
            assert len(http.get("/v1/memories").json()["items"]) == 1
    assert _stopped(data_dir)
