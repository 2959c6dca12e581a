"""``engramdb orgs list|delete [--purge] [--yes]``, on PostgreSQL and SQLite."""

from __future__ import annotations

import json

import pytest

from tests.conftest import CliRun, cli_runner
from tests.test_organizations_purge import Tenancy, _catalog, _fill, _organization_ids, t

__all__ = ["t"]  # the fixture, shared with the library's purge tests

Run = CliRun


@pytest.fixture
def run(t: Tenancy, capsys: pytest.CaptureFixture[str]) -> Run:
    return cli_runner(t.url, capsys)


def test_cli_purges_with_yes_and_records_it_at_home(t: Tenancy, run: Run) -> None:
    acme = t.home.for_organization("acme")
    _fill(t, acme)
    status, out, _err = run("orgs", "list", "--json")
    assert status == 0 and {o["id"] for o in json.loads(out)} == {"acme", "default"}

    status, _out, err = run("orgs", "delete", "acme", "--purge")  # not a terminal: no prompt
    assert status == 1 and "--yes" in err
    assert "acme" in _organization_ids(t)

    status, out, _err = run("orgs", "delete", "acme", "--purge", "--yes", "--json")
    assert status == 0, out
    assert json.loads(out) == {"id": "acme", "deleted": True, "purged": True}
    assert "acme" not in _organization_ids(t)
    assert [key for key in _catalog(t)[1] if key[1] == "acme"] == []
    [entry] = t.audit.list("default", resource_type="organization").items
    assert (entry.action, entry.resource_id, entry.actor_type) == ("purge", "acme", "cli")

    status, _out, err = run("orgs", "delete", "acme", "--purge", "--yes", "--json")
    assert status == 1 and json.loads(err)["error"]["code"] == "not_found"
    status, _out, err = run("orgs", "delete", "default", "--purge", "--yes")
    assert status == 1 and "error [conflict]" in err


def test_cli_soft_delete_keeps_the_data(t: Tenancy, run: Run) -> None:
    t.home.for_organization("globex").memories.add("globex remembers")
    status, out, _err = run("orgs", "delete", "globex")
    assert status == 0 and "data stays" in out
    assert ("memories", "globex") in _catalog(t)[1]
    status, out, _err = run("orgs", "list")
    assert status == 0 and "globex" not in out and "default" in out
    [entry] = t.audit.list("globex", resource_type="organization").items
    assert entry.action == "delete"


def test_cli_asks_on_a_terminal_and_purges_only_on_the_id(
    t: Tenancy, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    t.home.for_organization("acme").memories.add("acme remembers")
    answers = iter(["yes", " acme "])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    status, _out, err = run("orgs", "delete", "acme", "--purge")
    assert status == 1 and "--yes" in err  # "yes" is not the id
    assert ("memories", "acme") in _catalog(t)[1]
    status, out, _err = run("orgs", "delete", "acme", "--purge")
    assert status == 0 and "purged organization acme" in out
    assert "acme" not in _organization_ids(t)
