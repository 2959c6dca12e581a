"""Rate limits (per minute) and monthly quotas: 429 with Retry-After, counted in PostgreSQL so
that every server instance and process shares one count."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from engramdb.service.keys import ApiKeys

from .conftest import assert_error, bearer, owner_rows
from .live import ServeProcess

T = TypeVar("T")


def _minute(pg_url: str) -> datetime:
    row = owner_rows(pg_url, "SELECT date_trunc('minute', now()) AS m")[0]
    minute: datetime = row["m"]
    return minute


def within_one_minute(pg_url: str, scenario: Callable[[], T]) -> T:
    """Run ``scenario`` inside one rate-limit window (the database's minute); a run that
    straddles a minute boundary is repeated once (the scenario makes its own fresh key)."""
    for _attempt in range(2):
        start = _minute(pg_url)
        result = scenario()
        if _minute(pg_url) == start:
            return result
    pytest.fail("two runs in a row crossed a minute boundary")


def _counters(pg_url: str, key_id: object) -> dict[str, int]:
    rows = owner_rows(pg_url, "SELECT period, sum(count) AS n FROM api_key_counters "
                      "WHERE api_key_id = %s GROUP BY period", key_id)  # fmt: skip
    return {r["period"]: int(r["n"]) for r in rows}


def test_rate_limit_is_429_with_retry_after_across_app_instances(
    make_app: Callable[..., FastAPI], pg_url: str
) -> None:
    # Two apps on one database, like two server workers: each with its own pool and memory.
    first, second = make_app(), make_app()
    clients = [TestClient(first), TestClient(second)]
    keys: ApiKeys = first.state.engramdb.keys

    def scenario() -> tuple[Any, list[httpx.Response]]:
        key, secret = keys.create("acme", name="limited", scopes="read", rate_limit=4)
        h = bearer(secret)
        return key, [clients[i % 2].get("/v1/memories", headers=h) for i in range(7)]

    key, responses = within_one_minute(pg_url, scenario)
    assert [r.status_code for r in responses] == [200] * 4 + [429] * 3
    for resp in responses[4:]:
        err = assert_error(resp, 429, "rate_limited")
        assert err["details"]["limit"] == 4 and err["details"]["window"] == "minute"
        assert 1 <= int(resp.headers["retry-after"]) <= 60
        assert err["details"]["retry_after"] == int(resp.headers["retry-after"])
    # Refused requests are not charged to the monthly quota.
    assert _counters(pg_url, key.id) == {"minute": 7, "month": 4}


def test_another_key_is_not_limited_by_its_neighbour(
    app: FastAPI, client: TestClient, pg_url: str
) -> None:
    keys: ApiKeys = app.state.engramdb.keys

    def scenario() -> tuple[list[int], int]:
        _k, hot = keys.create("acme", name="hot", scopes="read", rate_limit=2)
        _k, calm = keys.create("acme", name="calm", scopes="read", rate_limit=2)
        hot_codes = [client.get("/v1/memories", headers=bearer(hot)).status_code for _ in range(3)]
        return hot_codes, client.get("/v1/memories", headers=bearer(calm)).status_code

    hot_codes, calm_code = within_one_minute(pg_url, scenario)
    assert hot_codes == [200, 200, 429] and calm_code == 200


def test_monthly_quota_is_429_with_its_own_code(app: FastAPI, client: TestClient) -> None:
    keys: ApiKeys = app.state.engramdb.keys
    _key, secret = keys.create("acme", name="metered", scopes="read,write", monthly_quota=3,
                               tier="enterprise")  # fmt: skip
    h = bearer(secret)
    codes = [client.get("/v1/memories", headers=h).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    for _ in range(2):
        resp = client.post("/v1/memories", json={"content": "over quota"}, headers=h)
        err = assert_error(resp, 429, "quota_exceeded")
        assert err["details"]["limit"] == 3 and err["details"]["window"] == "month"
        assert "quota" in err["message"]
    retry = int(resp.headers["retry-after"])
    now = datetime.now(UTC)
    next_month = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
    assert abs(retry - (next_month - now).total_seconds()) < 120
    # Nothing was written by the refused requests; raising the quota lets the key in again.
    assert app.state.engramdb.engram.memories.list(limit=10).items == []
    keys.update("acme", _key.prefix, {"monthly_quota": 10})
    assert client.post("/v1/memories", json={"content": "fine"}, headers=h).status_code == 201


def test_tier_defaults_apply_when_no_limits_are_given(app: FastAPI) -> None:
    keys: ApiKeys = app.state.engramdb.keys
    free, _ = keys.create("acme", name="free")
    assert (free.rate_limit, free.monthly_quota) == (60, 1000)
    unlimited, _ = keys.create("acme", name="big", tier="enterprise")
    assert (unlimited.rate_limit, unlimited.monthly_quota) == (None, None)


@pytest.mark.slow
def test_rate_limit_holds_across_server_processes(
    app: FastAPI, client: TestClient, pg_url: str
) -> None:
    """`engramdb serve --workers 2` (two more processes) and this process share one count."""
    keys: ApiKeys = app.state.engramdb.keys
    with ServeProcess("--workers", "2", env={"ENGRAMDB_DATABASE_URL": pg_url}) as server:

        def scenario() -> list[int]:
            _key, secret = keys.create("acme", name="shared", scopes="read", rate_limit=6)
            h = bearer(secret)
            codes = []
            with httpx.Client(base_url=server.url, headers=h, timeout=30) as remote:
                for i in range(10):
                    # New connections, so the kernel spreads them over both workers.
                    resp = (
                        client.get("/v1/memories", headers=h)
                        if i % 3 == 0
                        else remote.get("/v1/memories", headers={"Connection": "close"})
                    )
                    codes.append(resp.status_code)
            return codes

        codes = within_one_minute(pg_url, scenario)
    assert codes == [200] * 6 + [429] * 4
