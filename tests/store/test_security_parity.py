"""Organizations, API keys, usage and audit behave the same on PostgreSQL and SQLite.

The server's tests (tests/server) exercise these through HTTP on PostgreSQL; here the services
the server uses run directly on each store, with the same expectations.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import engramdb
from engramdb import Engram, Settings, connect
from engramdb.embeddings.hashing import HashEmbedder
from engramdb.models import utcnow
from engramdb.models.security import ApiKeyUses
from engramdb.service.audit import AuditLog
from engramdb.service.keys import ApiKeys
from engramdb.service.organizations import Organizations
from engramdb.service.usage import UsageRecorder, usage_totals
from engramdb.store import Store

DIM = 16


@dataclass
class Security:
    db: Engram
    store: Store
    keys: ApiKeys
    audit: AuditLog
    orgs: Organizations


@pytest.fixture(params=["postgres", "sqlite"])
def sec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Security]:
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'm.db'}"
    db = connect(url, embedder=HashEmbedder(DIM), settings=Settings(auto_migrate=True))
    store = db.engine.store
    yield Security(db, store, ApiKeys(store), AuditLog(store), Organizations(store))
    db.close()


def test_key_lifecycle(sec: Security) -> None:
    key, secret = sec.keys.create("acme", name="ci", scopes=["write"], tier="developer")
    assert key.scopes == ["write"] and key.rate_limit == 300
    assert sec.orgs.get("acme").id == "acme"  # named for the first time: created
    assert sec.keys.authenticate(secret).id == key.id
    assert sec.keys.find("acme", key.prefix).id == key.id
    assert sec.keys.find("acme", str(key.id)).id == key.id
    assert sec.keys.find("acme", key.prefix[:6]).id == key.id
    with pytest.raises(engramdb.NotFound):
        sec.keys.find("acme", key.prefix.upper() + "zz")
    with pytest.raises(engramdb.InvalidInput):
        sec.keys.find("acme", "ab")
    with pytest.raises(engramdb.NotFound):  # another organization's key does not exist here
        sec.keys.find("default", key.prefix)

    renamed = sec.keys.update("acme", key.prefix, {"name": "ci 2", "enabled": False})
    assert (renamed.name, renamed.enabled) == ("ci 2", False)
    with pytest.raises(engramdb.AuthenticationError, match="disabled"):
        sec.keys.authenticate(secret)
    sec.keys.update("acme", key.prefix, {"enabled": True, "rate_limit": None})
    assert sec.keys.authenticate(secret).rate_limit is None
    later = utcnow() + timedelta(days=3)
    assert sec.keys.update("acme", key.prefix, {"expires_at": later}).expires_at == later

    revoked = sec.keys.revoke("acme", key.prefix, actor="admin")
    assert revoked.revoked_at is not None and not revoked.enabled
    with pytest.raises(engramdb.AuthenticationError, match="revoked"):
        sec.keys.authenticate(secret)
    with pytest.raises(engramdb.Conflict):
        sec.keys.update("acme", key.prefix, {"enabled": True})
    with pytest.raises(engramdb.AuthenticationError):
        sec.keys.authenticate("not-a-key")


def test_key_listing_pages_and_hides_revoked(sec: Security) -> None:
    made = [sec.keys.create("acme", name=f"k{i}")[0] for i in range(5)]
    sec.keys.revoke("acme", made[0].prefix)
    seen, cursor = [], None
    while True:
        page = sec.keys.list("acme", limit=2, cursor=cursor)
        seen.extend(k.id for k in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted((k.id for k in made[1:]), reverse=True)
    everything = sec.keys.list("acme", limit=10, include_revoked=True).items
    assert len(everything) == 5
    assert sec.keys.list("default").items == []


def test_rate_limit_and_quota_are_counted_in_the_database(sec: Security) -> None:
    _, limited = sec.keys.create("acme", name="rl", rate_limit=3, monthly_quota=100)
    for _ in range(3):
        sec.keys.authenticate(limited)
    with pytest.raises(engramdb.RateLimited) as info:
        sec.keys.authenticate(limited)
    assert info.value.retry_after is not None and 1 <= info.value.retry_after <= 60
    use = sec.keys.lookup(limited)
    assert (use.minute_count, use.month_count) == (5, 0)  # refused: not counted in the month

    _, quota = sec.keys.create("acme", name="q", rate_limit=None, monthly_quota=2)
    sec.keys.authenticate(quota)
    sec.keys.authenticate(quota)
    for _ in range(2):
        with pytest.raises(engramdb.QuotaExceeded):
            sec.keys.authenticate(quota)
    assert sec.keys.lookup(quota).month_count == 3  # stays at quota + 1

    key, unlimited = sec.keys.create("acme", name="u", tier="enterprise")
    for _ in range(5):
        sec.keys.authenticate(unlimited)
    used = sec.keys.find("acme", key.prefix)
    assert used.last_used_at is not None


def test_uses_counted_in_memory_are_added_to_their_windows(sec: Security) -> None:
    """What the server's key cache counts in memory lands in the same windows as lookups."""
    if utcnow().second >= 58:  # the lookups below must fall in the same minute
        time.sleep(3)
    key, secret = sec.keys.create("acme", name="u", tier="enterprise")
    sec.keys.lookup(secret)  # counted by the lookup: 1 in this minute and month
    now = utcnow()
    minute = now.replace(second=0, microsecond=0)
    later = now + timedelta(seconds=1)
    earlier_month = (minute.replace(day=1) - timedelta(days=1)).replace(day=1)
    sec.store.add_api_key_uses("acme", [
        ApiKeyUses(key_id=key.id, minute=minute, count=4, last_used_at=later),
        ApiKeyUses(key_id=key.id, minute=minute, count=3, last_used_at=now),
        # a minute of last month: its own month window, not this one
        ApiKeyUses(key_id=key.id, minute=earlier_month, count=2, last_used_at=earlier_month),
        ApiKeyUses(key_id=uuid.uuid4(), minute=minute, count=9, last_used_at=now),  # gone
    ])  # fmt: skip
    sec.store.add_api_key_uses("acme", [])
    use = sec.keys.lookup(secret)  # and this request: 1 + 7 + 1
    assert (use.minute_count, use.month_count) == (9, 9)
    found = sec.keys.find("acme", key.prefix).last_used_at
    assert found is not None and found >= later  # moved forward, never back
    # Another organization's name does not reach this organization's key.
    sec.store.add_api_key_uses("globex", [
        ApiKeyUses(key_id=key.id, minute=minute, count=50, last_used_at=now),
    ])  # fmt: skip
    assert sec.keys.lookup(secret).minute_count == 10


def test_expired_key_and_deleted_organization_are_refused(sec: Security) -> None:
    key, secret = sec.keys.create("acme", name="e")
    past = datetime.now(UTC) - timedelta(minutes=1)
    sec.store.update_api_key("acme", key.id, {"expires_at": past}, actor=None)
    with pytest.raises(engramdb.AuthenticationError, match="expired"):
        sec.keys.authenticate(secret)
    assert sec.keys.lookup(secret).minute_count == 0  # an unusable key counts nothing

    _, other = sec.keys.create("gone", name="g")
    sec.keys.authenticate(other)
    sec.orgs.delete("gone")
    with pytest.raises(engramdb.AuthenticationError):
        sec.keys.authenticate(other)
    with pytest.raises(engramdb.NotFound):
        sec.orgs.get("gone")


def test_first_key_is_created_once(sec: Security) -> None:
    first = sec.keys.create_first("default")
    assert first is not None and "admin" in first[0].scopes
    assert sec.keys.create_first("default") is None
    assert sec.keys.authenticate(first[1]).organization_id == "default"


def test_organizations(sec: Security) -> None:
    created = sec.orgs.create("acme", name="Acme Inc", metadata={"plan": "pro"})
    assert (created.name, created.metadata) == ("Acme Inc", {"plan": "pro"})
    with pytest.raises(engramdb.Conflict):
        sec.orgs.create("acme")
    updated = sec.orgs.update("acme", metadata={"plan": "free"})
    assert updated.metadata == {"plan": "free"} and updated.updated_at >= created.updated_at
    for name in ("beta", "gamma"):
        sec.orgs.create(name)
    ids, cursor = [], None
    while True:
        page = sec.orgs.list(limit=2, cursor=cursor)
        ids.extend(o.id for o in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert ids == ["acme", "beta", "default", "gamma"]
    sec.orgs.delete("beta")
    assert [o.id for o in sec.orgs.list().items] == ["acme", "default", "gamma"]
    with pytest.raises(engramdb.NotFound):
        sec.orgs.delete("beta")
    with pytest.raises(engramdb.NotFound):
        sec.orgs.update("nope", name="x")


def test_usage_totals_per_month_key_and_subject(sec: Security) -> None:
    key, _ = sec.keys.create("acme", name="metered")
    recorder = UsageRecorder(sec.store)
    now = utcnow()
    last_month = now.replace(day=1) - timedelta(days=2)
    for status, latency in ((200, 10.0), (200, 20.0), (404, 30.0)):
        recorder.record(organization_id="acme", endpoint="/v1/memories", method="GET",
                        status_code=status, latency_ms=latency, api_key_id=key.id, tokens=5)  # fmt: skip
    recorder.record(organization_id="acme", endpoint="/v1/memories", method="POST",
                    status_code=201, latency_ms=5.0, subject="user-1", at=last_month)  # fmt: skip
    recorder.record(organization_id="default", endpoint="/v1/memories", method="GET",
                    status_code=200, latency_ms=1.0, api_key_id=key.id)  # fmt: skip
    recorder.close()
    totals = usage_totals(sec.store, "acme")
    assert [(t.month, t.api_key_id, t.subject, t.requests, t.errors, t.tokens) for t in totals] == [
        (f"{now:%Y-%m}", key.id, None, 3, 1, 15),
        (f"{last_month:%Y-%m}", None, "user-1", 1, 0, 0),
    ]
    assert totals[0].avg_latency_ms == pytest.approx(20.0)
    assert [t.subject for t in usage_totals(sec.store, "acme", subject="user-1")] == ["user-1"]
    assert len(usage_totals(sec.store, "acme", api_key_id=key.id)) == 1
    assert len(usage_totals(sec.store, "acme", since=now.replace(day=1, hour=0))) == 1
    assert sec.store.prune_api_key_counters("acme", utcnow() + timedelta(minutes=2)) == 0


def test_minute_windows_are_pruned(sec: Security) -> None:
    _, secret = sec.keys.create("acme", name="p")
    sec.keys.authenticate(secret)
    assert sec.store.prune_api_key_counters("default", utcnow() + timedelta(minutes=2)) == 0
    assert sec.store.prune_api_key_counters("acme", utcnow() - timedelta(minutes=2)) == 0
    assert sec.store.prune_api_key_counters("acme", utcnow() + timedelta(minutes=2)) == 1
    assert sec.keys.lookup(secret).minute_count == 1  # a new window; the month stays counted


def test_audit_log(sec: Security) -> None:
    with pytest.raises(engramdb.NotFound):  # entries belong to an existing organization
        sec.audit.record("acme", actor_type="api_key", actor_id="k1", action="update",
                         resource_type="memories")  # fmt: skip
    sec.orgs.create("acme")
    made = [
        sec.audit.record("acme", actor_type="api_key", actor_id="k1", action="update",
                         resource_type="memories", resource_id=f"m{i}",
                         before={"version": i}, after={"version": i + 1}, request_id="r")
        for i in range(3)
    ]  # fmt: skip
    sec.audit.record("default", actor_type="jwt", actor_id="u", action="delete",
                     resource_type="memories", resource_id="m0")  # fmt: skip
    page = sec.audit.list("acme", limit=2)
    assert [e.id for e in page.items] == [made[2].id, made[1].id]
    assert page.items[0] == made[2]  # every field round-trips, JSON included
    rest = sec.audit.list("acme", limit=2, cursor=page.next_cursor)
    assert [e.id for e in rest.items] == [made[0].id] and rest.next_cursor is None
    assert [e.id for e in sec.audit.list("acme", resource_id="m1").items] == [made[1].id]
    assert sec.audit.list("acme", resource_type="keys").items == []
    assert [e.actor_type for e in sec.audit.list("default").items] == ["jwt"]


class _Entries:
    """A ``service.memories.MemoryAudit`` as the server's: one entry per change, named."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def _entry(self, action: str, memory_id: str, **changes: Any) -> Any:
        from engramdb.service.audit import audit_entry

        self.asked.append((action, memory_id))
        return audit_entry("default", actor_type="api_key", actor_id="key:k", action=action,
                           resource_type="memory", resource_id=memory_id, request_id="r1",
                           **changes)  # fmt: skip

    def created(self, memory_id: uuid.UUID) -> Any:
        return self._entry("create", str(memory_id), after={"id": str(memory_id), "version": 1})

    def updated(self, memory: Any) -> Any:
        return self._entry("update", str(memory.id), after={"version": memory.version})

    def deleted(self, memory_id: uuid.UUID, purge: bool) -> Any:
        return self._entry("purge" if purge else "delete", str(memory_id))


def test_an_add_writes_its_audit_entry_with_the_memory(sec: Security) -> None:
    """``Memories(audit=…)``: the entry of a created memory is written by the store with the
    memory; a duplicate found instead writes none (its caller audits it), and a failed add
    writes neither."""
    from engramdb.service.memories import Memories

    entries = _Entries()
    memories = Memories(sec.db.engine, "default", "key:k", audit=entries)
    made = memories.add("Alice prefers window seats", user_id="alice")
    assert entries.asked == [("create", str(made.id))]
    [written] = sec.audit.list("default").items
    assert (written.resource_id, written.after, written.request_id) == (
        str(made.id), {"id": str(made.id), "version": made.version}, "r1")  # fmt: skip
    again = memories.add("Alice prefers window seats", user_id="alice")
    assert again.id == made.id  # (whether the hook was asked again is the store's business)
    assert len(sec.audit.list("default").items) == 1  # the duplicate wrote no entry
    with pytest.raises(engramdb.InvalidInput):
        memories.add("x", embedding=[0.0] * (DIM + 1))
    assert len(sec.audit.list("default").items) == 1
    # Without the hook, nothing is audited by the library.
    sec.db.memories.add("Bob prefers the aisle", user_id="bob")
    assert len(sec.audit.list("default").items) == 1


def test_updates_and_deletes_write_their_audit_entries_with_the_change(sec: Security) -> None:
    """An update's entry carries the version it made and is written with it; an update that
    changes nothing writes none; a soft delete and a purge write theirs; a change that fails
    (a memory not there) writes nothing."""
    from engramdb.service.memories import Memories

    entries = _Entries()
    memories = Memories(sec.db.engine, "default", "key:k", audit=entries)
    first = sec.db.memories.add("Carol likes tea", user_id="carol")
    second = sec.db.memories.add("Dan likes coffee", user_id="dan")

    changed = memories.update(first.id, content="Carol likes green tea")
    assert changed.version == 2
    [entry] = sec.audit.list("default").items
    assert (entry.action, entry.resource_id, entry.after) == ("update", str(first.id),
                                                             {"version": 2})  # fmt: skip
    same = memories.update(first.id, content="Carol likes green tea")  # no change: no entry
    assert same.version == 2 and len(sec.audit.list("default").items) == 1

    memories.delete(first.id)
    memories.delete(second.id, purge=True)
    got = [(e.action, e.resource_id) for e in reversed(sec.audit.list("default").items)]
    assert got == [("update", str(first.id)), ("delete", str(first.id)),
                   ("purge", str(second.id))]  # fmt: skip
    with pytest.raises(engramdb.NotFound):
        memories.delete(first.id)  # deleted already (a purge of it would still go ahead)
    for gone in (second.id, uuid.uuid4()):
        for purge in (False, True):
            with pytest.raises(engramdb.NotFound):
                memories.delete(gone, purge=purge)
    with pytest.raises(engramdb.NotFound):
        memories.update(second.id, content="Dan likes tea")
    assert len(sec.audit.list("default").items) == 3


def test_two_connections_share_one_rate_limit(sec: Security) -> None:
    """Counts live in the database: a second connection (as another worker process would
    have) adds to the same windows."""
    _, secret = sec.keys.create("acme", name="shared", rate_limit=4)
    url = sec.db.engine.settings.database_url
    other = connect(url, embedder=HashEmbedder(DIM), settings=Settings(auto_migrate=True))
    try:
        keys = [sec.keys, ApiKeys(other.engine.store)]
        for i in range(4):
            keys[i % 2].authenticate(secret)
        for k in keys:
            with pytest.raises(engramdb.RateLimited):
                k.authenticate(secret)
    finally:
        other.close()
