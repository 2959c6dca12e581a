"""``engramdb keys create|list|revoke``, working on the database directly; the keys it makes
work against the server."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import CliRun, cli_runner

from .conftest import assert_error, bearer, owner_rows

Run = CliRun


@pytest.fixture
def run(pg_url: str, capsys: pytest.CaptureFixture[str]) -> Run:
    return cli_runner(pg_url, capsys)


def test_keys_create_json_makes_a_working_key_in_a_new_organization(
    run: Run, pg_url: str, make_app: Callable[..., FastAPI]
) -> None:
    status, out, _err = run(
        "keys", "create", "--org", "newco", "--name", "ci", "--scopes", "read,write",
        "--rate-limit", "5", "--quota", "100", "--expires-in", "30", "--json",
    )  # fmt: skip
    assert status == 0
    made = json.loads(out)
    secret, key_id = made["key"], made["id"]
    assert secret.startswith(made["prefix"] + "_")
    assert made["organization_id"] == "newco" and made["scopes"] == ["read", "write"]
    assert made["rate_limit"] == 5 and made["monthly_quota"] == 100
    expires = datetime.fromisoformat(made["expires_at"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    # The organization was created; only the hash of the secret is stored.
    assert owner_rows(pg_url, "SELECT id FROM organizations WHERE id = 'newco'")
    [row] = owner_rows(pg_url, "SELECT key_hash FROM api_keys WHERE id = %s", key_id)
    assert row["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()

    client = TestClient(make_app())
    info = client.get("/v1/info", headers=bearer(secret)).json()
    assert info["organization"] == "newco" and info["scopes"] == ["read", "write"]
    assert (
        client.post("/v1/memories", json={"content": "x"}, headers=bearer(secret)).status_code
        == 201
    )
    assert_error(client.get("/v1/keys", headers=bearer(secret)), 403, "permission_denied")


def test_keys_create_human_output_shows_the_secret_once(run: Run) -> None:
    status, out, _err = run("keys", "create", "--name", "laptop")
    assert status == 0
    secret = out.split()[0]
    assert secret.startswith("edb_")
    assert "shown only once" in out and "organization default" in out
    # --json also works before the command name.
    status, out, _err = run("--json", "keys", "create", "--name", "second")
    assert status == 0 and json.loads(out)["organization_id"] == "default"
    # Listing never shows secrets.
    status, out, _err = run("keys", "list")
    assert status == 0 and secret not in out and secret.split("_")[1] in out


def test_keys_list_and_revoke_by_prefix_or_id(run: Run, make_app: Callable[..., FastAPI]) -> None:
    made: dict[str, dict[str, Any]] = {}
    for org, name in (("acme", "one"), ("acme", "two"), ("globex", "three")):
        status, out, _ = run("keys", "create", "--org", org, "--name", name, "--json")
        assert status == 0
        made[name] = json.loads(out)
    status, out, _ = run("keys", "list", "--org", "acme", "--json")
    listed = json.loads(out)
    assert status == 0 and {k["name"] for k in listed} == {"one", "two"}
    assert all("key" not in k and "key_hash" not in k for k in listed)
    status, out, _ = run("keys", "list", "--all", "--json")
    assert {k["name"] for k in json.loads(out)} == {"one", "two", "three"}
    status, out, _ = run("keys", "list", "--org", "acme")
    assert made["one"]["prefix"] in out and "active" in out

    client = TestClient(make_app())
    one, three = bearer(made["one"]["key"]), bearer(made["three"]["key"])
    assert client.get("/v1/memories", headers=one).status_code == 200
    # By prefix, without naming the organization: every organization is searched.
    status, out, _ = run("keys", "revoke", made["one"]["prefix"])
    assert status == 0 and "revoked" in out and made["one"]["prefix"] in out
    assert_error(client.get("/v1/memories", headers=one), 401, "unauthenticated")
    # By id, in its organization.
    status, out, _ = run("keys", "revoke", made["three"]["id"], "--org", "globex", "--json")
    assert status == 0 and json.loads(out)["revoked_at"] is not None
    assert_error(client.get("/v1/memories", headers=three), 401, "unauthenticated")
    assert client.get("/v1/memories", headers=bearer(made["two"]["key"])).status_code == 200
    status, out, _ = run("keys", "list", "--org", "acme", "--revoked", "--json")
    states = {k["name"]: k["revoked_at"] is not None for k in json.loads(out)}
    assert states == {"one": True, "two": False}


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("keys", "revoke", "edb_nothing1"), "not_found"),
        (("keys", "create", "--name", "x", "--scopes", "read,root"), "invalid_input"),
        (("keys", "create", "--name", "x", "--org", "bad org!"), "invalid_input"),
        (("keys", "create", "--name", "x", "--rate-limit", "0"), "invalid_input"),
        (("keys", "create", "--name", "x", "--expires-in", "-1"), "invalid_input"),
    ],
)
def test_keys_errors_are_clear(run: Run, pg_url: str, args: tuple[str, ...], code: str) -> None:
    status, out, err = run(*args)
    assert status == 1 and out == ""
    assert f"error [{code}]" in err and "Traceback" not in err
    status, _out, err = run("--json", *args)
    assert status == 1 and json.loads(err)["error"]["code"] == code
    assert owner_rows(pg_url, "SELECT count(*) AS n FROM api_keys")[0]["n"] == 0
