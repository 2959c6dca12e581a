"""The server remembers keys without limits: no round trip per request, yet every change to a
key -- made here, by another server process, or in plain SQL -- takes effect within moments,
and the requests are still counted in the key's windows."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from fastapi import FastAPI
from fastapi.testclient import TestClient

from engramdb.models.security import ApiKey
from engramdb.service.key_cache import KeyCache

from .conftest import assert_error, bearer, owner_rows


def _wait(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def _early_in_a_minute() -> None:
    """Rate limits count per calendar minute: a test of one must not straddle two."""
    second = datetime.now(UTC).second
    if second >= 50:
        time.sleep(61 - second)


@contextmanager
def _held_counts(app: FastAPI) -> Iterator[None]:
    """Keeps the usage writer from adding remembered keys' counts to the database meanwhile:
    then a key's minute counters in PostgreSQL hold exactly the requests that looked it up
    there (the round trip the cache saves)."""
    with app.state.engramdb.usage._flush_lock:
        yield


def _looked_up(pg_url: str, key_id: object) -> int:
    """Requests of a key counted by lookups in the database (its minute windows)."""
    return _counters(pg_url, key_id).get("minute", 0)


def _cache(app: FastAPI) -> KeyCache:
    cache = app.state.engramdb.key_cache
    assert cache is not None
    _wait(lambda: cache.alive)  # the listener connects in the background
    return cache


def _counters(pg_url: str, key_id: object) -> dict[str, int]:
    rows = owner_rows(
        pg_url, "SELECT period, sum(count) AS n FROM api_key_counters WHERE api_key_id = %s "
        "GROUP BY period", key_id,
    )  # fmt: skip
    return {r["period"]: int(r["n"]) for r in rows}


def test_a_key_without_limits_is_looked_up_once_and_still_counted(
    app: FastAPI, client: TestClient, pg_url: str
) -> None:
    cache = _cache(app)
    key, secret = app.state.engramdb.keys.create("acme", name="free-running", tier="enterprise")
    before = datetime.now(UTC)
    with _held_counts(app):
        for _ in range(6):
            assert client.get("/v1/memories", headers=bearer(secret)).status_code == 200
        assert _looked_up(pg_url, key.id) == 1 and len(cache) == 1
    # The first request was counted by its lookup, the other five in memory until a flush
    # (the background writer's, about every second, or this one).
    app.state.engramdb.usage.flush()
    assert _counters(pg_url, key.id) == {"minute": 6, "month": 6}
    used = owner_rows(pg_url, "SELECT last_used_at FROM api_keys WHERE id = %s", key.id)
    assert used[0]["last_used_at"] >= before - timedelta(seconds=1)
    # Usage events are unchanged: one per request.
    events = owner_rows(pg_url, "SELECT count(*) AS n FROM usage_events WHERE subject = %s",
                        str(key.id))  # fmt: skip
    assert events[0]["n"] == 6


def test_keys_with_limits_are_looked_up_and_counted_on_every_request(
    app: FastAPI, client: TestClient, pg_url: str
) -> None:
    cache = _cache(app)
    _early_in_a_minute()
    keys = app.state.engramdb.keys
    rl, limited = keys.create("acme", name="rl", tier="enterprise", rate_limit=3)
    q, quota = keys.create("acme", name="q", tier="enterprise", monthly_quota=1000)
    for _ in range(3):
        assert client.get("/v1/memories", headers=bearer(limited)).status_code == 200
        assert client.get("/v1/memories", headers=bearer(quota)).status_code == 200
    assert_error(client.get("/v1/memories", headers=bearer(limited)), 429, "rate_limited")
    assert _looked_up(pg_url, rl.id) + _looked_up(pg_url, q.id) == 7 and len(cache) == 0


def test_changes_made_by_this_process_take_effect_on_the_next_request(
    app: FastAPI, client: TestClient, pg_url: str
) -> None:
    cache = _cache(app)
    _early_in_a_minute()
    keys = app.state.engramdb.keys
    key, secret = keys.create("acme", name="k", tier="enterprise")
    h = bearer(secret)
    assert client.get("/v1/memories", headers=h).status_code == 200
    assert len(cache) == 1

    keys.update("acme", str(key.id), {"enabled": False})
    assert_error(client.get("/v1/memories", headers=h), 401, "unauthenticated")
    keys.update("acme", str(key.id), {"enabled": True})
    assert client.get("/v1/memories", headers=h).status_code == 200
    keys.update("acme", str(key.id), {"rate_limit": 2})  # now limited: counted in the database
    with _held_counts(app):
        calls = _looked_up(pg_url, key.id)
        client.get("/v1/memories", headers=h)
        client.get("/v1/memories", headers=h)
        assert_error(client.get("/v1/memories", headers=h), 429, "rate_limited")
        assert _looked_up(pg_url, key.id) == calls + 3 and len(cache) == 0

    keys.update("acme", str(key.id), {"rate_limit": None})
    assert client.get("/v1/memories", headers=h).status_code == 200
    keys.revoke("acme", str(key.id))
    assert_error(client.get("/v1/memories", headers=h), 401, "unauthenticated")


def test_changes_made_elsewhere_are_heard(make_app: Callable[..., FastAPI], pg_url: str) -> None:
    """Another worker process (a second app on the same database) and plain SQL."""
    here, there = make_app(), make_app()
    cache = _cache(here)
    client = TestClient(here, raise_server_exceptions=False)
    key, secret = there.state.engramdb.keys.create("acme", name="k", tier="enterprise")
    h = bearer(secret)
    assert client.get("/v1/memories", headers=h).status_code == 200
    assert len(cache) == 1

    there.state.engramdb.keys.update("acme", str(key.id), {"enabled": False})
    _wait(lambda: len(cache) == 0, seconds=5)
    assert_error(client.get("/v1/memories", headers=h), 401, "unauthenticated")

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE api_keys SET enabled = true WHERE id = %s", (key.id,))
    assert client.get("/v1/memories", headers=h).status_code == 200
    assert len(cache) == 1
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE api_keys SET scopes = '{read}' WHERE id = %s", (key.id,))
    _wait(lambda: len(cache) == 0, seconds=5)
    assert_error(client.post("/v1/memories", json={"content": "x"}, headers=h), 403,
                 "permission_denied")  # fmt: skip

    # A deleted organization's keys stop, whoever deletes it.
    assert client.get("/v1/memories", headers=h).status_code == 200
    assert len(cache) == 1
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE organizations SET deleted_at = now() WHERE id = 'acme'")
    _wait(lambda: len(cache) == 0, seconds=5)
    assert_error(client.get("/v1/memories", headers=h), 401, "unauthenticated")


def test_nothing_is_served_from_memory_while_changes_go_unheard(
    app: FastAPI, client: TestClient, pg_url: str
) -> None:
    cache = _cache(app)
    key, secret = app.state.engramdb.keys.create("acme", name="k", tier="enterprise")
    h = bearer(secret)
    assert client.get("/v1/memories", headers=h).status_code == 200
    assert len(cache) == 1
    # Cut the listening connection, as a database restart or a network fault would.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        cut = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query = 'LISTEN engramdb_api_keys'"
        ).fetchall()
    assert cut == [(True,)]
    _wait(lambda: not cache.alive or len(cache) == 0)
    _wait(lambda: len(cache) == 0)  # forgotten: what changed meanwhile is unknown
    _wait(lambda: cache.alive)  # and it listens again
    with _held_counts(app):
        calls = _looked_up(pg_url, key.id)
        for _ in range(3):
            assert client.get("/v1/memories", headers=h).status_code == 200
        assert _looked_up(pg_url, key.id) == calls + 1 and len(cache) == 1


def test_the_cache_can_be_turned_off(make_app: Callable[..., FastAPI], pg_url: str) -> None:
    app = make_app(api_key_cache_seconds=0)
    assert app.state.engramdb.key_cache is None
    key, secret = app.state.engramdb.keys.create("acme", name="k", tier="enterprise")
    client = TestClient(app, raise_server_exceptions=False)
    for _ in range(3):
        assert client.get("/v1/memories", headers=bearer(secret)).status_code == 200
    app.state.engramdb.usage.flush()  # nothing held back: all three were looked up
    assert _looked_up(pg_url, key.id) == 3


class _Watch:
    alive = True

    def close(self) -> None:
        self.alive = False


class _Store:
    """Only what KeyCache asks of a store."""

    def __init__(self) -> None:
        self.watch = _Watch()
        self.on_change: Callable[[str | None], None] | None = None

    def watch_api_keys(self, on_change: Callable[[str | None], None]) -> _Watch:
        self.on_change = on_change
        return self.watch


def _key(org: str = "acme", **changes: Any) -> ApiKey:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "id": uuid.uuid4(), "organization_id": org, "name": "k", "prefix": "edb_abcdefgh",
        "scopes": ["read"], "tier": "enterprise", "rate_limit": None, "monthly_quota": None,
        "enabled": True, "created_at": now, "last_used_at": None, "expires_at": None,
        "revoked_at": None,
    }  # fmt: skip
    return ApiKey.model_validate({**fields, **changes})


def test_key_cache_rules() -> None:
    now = [0.0]
    store = _Store()
    cache = KeyCache(store, seconds=10, size=2, clock=lambda: now[0])  # type: ignore[arg-type]
    gen = cache.generation()
    assert gen is not None
    a, b, c = _key(), _key(), _key("globex")
    # Only keys with nothing to count against, usable now, are remembered.
    assert not cache.put("x", _key(rate_limit=5), gen)
    assert not cache.put("x", _key(monthly_quota=5), gen)
    assert not cache.put("x", _key(enabled=False), gen)
    assert not cache.put("x", _key(revoked_at=datetime.now(UTC)), gen)
    assert not cache.put("x", _key(expires_at=datetime.now(UTC) - timedelta(seconds=1)), gen)
    assert cache.put("a", a, gen) and cache.get("a") == a
    # A lookup that began before a change was heard does not enter what it found.
    cache.changed(str(uuid.uuid4()))
    assert not cache.put("b", b, gen)
    gen = cache.generation()
    assert gen is not None
    assert cache.put("b", b, gen) and cache.put("c", c, gen)
    assert cache.get("a") is None and len(cache) == 2  # the least recently used left
    assert store.on_change is not None
    store.on_change("org:globex")
    assert cache.get("c") is None and cache.get("b") == b
    store.on_change(str(b.id))
    assert cache.get("b") is None
    gen = cache.generation()
    assert gen is not None
    cache.put("a", a, gen)
    now[0] = 10.5  # entries live ``seconds`` at most
    assert cache.get("a") is None
    cache.put("a", a, gen)
    soon = _key(expires_at=datetime.now(UTC) + timedelta(seconds=0.2))
    assert cache.put("s", soon, gen) and cache.get("s") == soon
    time.sleep(0.25)  # an expiring key is not served past its expiry, however young the entry
    assert cache.get("s") is None
    store.on_change(None)  # anything may have changed
    assert len(cache) == 0
    cache.put("a", a, gen + 1)
    store.watch.alive = False  # not hearing changes: nothing served, nothing remembered
    assert cache.get("a") is None and cache.generation() is None
    assert not cache.put("b", b, gen + 1)
    cache.close()
    assert len(cache) == 0
