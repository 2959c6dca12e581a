"""Fixtures for server tests: the real app on a fresh database, keys, and clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from engramdb.server import create_app

from .live import server_settings

MakeKey = Callable[..., str]


@pytest.fixture
def make_app(pg_url: str) -> Iterator[Callable[..., FastAPI]]:
    """Build apps on the test database (several share it, like server workers)."""
    apps: list[FastAPI] = []

    def make(**settings: Any) -> FastAPI:
        app = create_app(server_settings(pg_url, **settings))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.state.engramdb.close()


@pytest.fixture
def app(make_app: Callable[..., FastAPI]) -> FastAPI:
    return make_app()


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def make_key(app: FastAPI) -> MakeKey:
    """``make_key("acme", "read,write", rate_limit=…)`` → the secret of a new key."""

    def make(org: str = "default", scopes: str = "read,write,admin", **options: Any) -> str:
        options.setdefault("tier", "enterprise")
        _key, secret = app.state.engramdb.keys.create(org, name="test", scopes=scopes, **options)
        return str(secret)

    return make


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    """The response is the one error shape with this status and code; returns the error."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    error: dict[str, Any] = body["error"]
    return error


def owner_rows(pg_url: str, query: str, *params: Any) -> list[dict[str, Any]]:
    """Rows of ``query`` run as the database owner (who sees every tenant)."""
    with psycopg.connect(pg_url, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()
