"""The memory API contract, run on every backend (see BACKENDS in conftest)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

import engramdb
from engramdb import Engram


def count(db: Engram, **kw: object) -> int:
    total, cursor = 0, None
    while True:
        page = db.memories.list(limit=1000, cursor=cursor, **kw)  # type: ignore[arg-type]
        total += len(page.items)
        if page.next_cursor is None:
            return total
        cursor = page.next_cursor


def test_add_and_get_round_trip(db: Engram) -> None:
    m = db.memories.add(
        "Alice prefers window seats",
        agent_id="travel-bot",
        user_id="alice",
        kind="semantic",
        tags=["travel", "seats"],
        metadata={"source": "chat", "n": 3},
        importance="high",
        data={"concept": "seating"},
    )
    got = db.memories.get(m.id)
    assert got == m
    assert got.content == "Alice prefers window seats"
    assert (got.agent_id, got.user_id, got.kind) == ("travel-bot", "alice", "semantic")
    assert got.tags == ["travel", "seats"]
    assert got.metadata == {"source": "chat", "n": 3}
    assert got.importance == 0.75
    assert got.organization_id == "default"
    assert got.version == 1
    assert got.embedding_model == db.embedder.model
    assert got.embedding is None
    with_vec = db.memories.get(m.id, with_embedding=True)
    assert with_vec.embedding is not None and len(with_vec.embedding) == db.embedder.dimensions


def test_get_by_string_id_and_unknown_id(db: Engram) -> None:
    m = db.memories.add("a fact", agent_id="a")
    assert db.memories.get(str(m.id)).id == m.id
    with pytest.raises(engramdb.NotFound) as info:
        db.memories.get(uuid.uuid4())
    assert info.value.code == "not_found" and info.value.http_status == 404
    with pytest.raises(engramdb.InvalidInput):
        db.memories.get("not-a-uuid")


def test_identical_content_in_same_scope_is_not_stored_twice(db: Engram) -> None:
    a = db.memories.add("likes tea", agent_id="bot", user_id="u1")
    b = db.memories.add("  likes tea ", agent_id="bot", user_id="u1")
    assert a.id == b.id
    c = db.memories.add("likes tea", agent_id="bot", user_id="u2")  # another scope
    assert c.id != a.id
    d = db.memories.add("likes tea", agent_id="bot", user_id="u1", is_unique=False)
    assert d.id != a.id
    assert count(db, agent_id="bot") == 3


def test_near_duplicate_threshold(db: Engram) -> None:
    a = db.memories.add("the user likes green tea in the morning", agent_id="bot")
    same = db.memories.add(
        "the user likes green tea in the morning!", agent_id="bot", dedup_threshold=0.9
    )
    assert same.id == a.id
    other = db.memories.add("quarterly revenue grew", agent_id="bot", dedup_threshold=0.9)
    assert other.id != a.id


def test_add_many_in_order_with_dedup_and_given_vectors(db: Engram) -> None:
    dim = db.embedder.dimensions
    vec = [0.0] * dim
    vec[3] = 1.0
    items = [
        {"content": f"fact number {i}", "agent_id": "bot", "user_id": f"user-{i % 3}"}
        for i in range(25)
    ]
    items.append({"content": "fact number 0", "agent_id": "bot", "user_id": "user-0"})
    items.append({"content": "own vector", "agent_id": "bot", "embedding": vec})
    out = db.memories.add_many(items)
    assert [m.content for m in out] == [i["content"] for i in items]
    assert out[25].id == out[0].id  # in-batch duplicate returns the first
    assert count(db, agent_id="bot") == 26
    stored = db.memories.get(out[-1].id, with_embedding=True)
    assert stored.embedding == pytest.approx(vec)
    assert db.memories.add_many([]) == []


def test_add_many_is_all_or_nothing(db: Engram) -> None:
    items = [{"content": "ok one", "agent_id": "bot"}, {"content": "", "agent_id": "bot"}]
    with pytest.raises(engramdb.InvalidInput) as info:
        db.memories.add_many(items)
    assert info.value.details.get("index") == 1
    wrong = [{"content": "ok", "agent_id": "bot"}, {"content": "x", "embedding": [1.0, 2.0]}]
    with pytest.raises(engramdb.DimensionMismatch):
        db.memories.add_many(wrong)
    assert count(db) == 0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"content": ""}, engramdb.InvalidInput),
        ({"content": "   "}, engramdb.InvalidInput),
        ({"content": "x" * 40_000}, engramdb.LimitExceeded),
        ({"content": "x", "embedding": [0.1, 0.2, 0.3]}, engramdb.DimensionMismatch),
        ({"content": "x", "importance": 2.0}, engramdb.InvalidInput),
        ({"content": "x", "importance": "enormous"}, engramdb.InvalidInput),
        ({"content": "x", "kind": "Not A Kind"}, engramdb.InvalidInput),
        ({"content": "x", "agent_id": "bad id with spaces"}, engramdb.InvalidInput),
        ({"content": "x", "metadata": {"k": "v" * 20_000}}, engramdb.LimitExceeded),
        ({"content": "x", "tags": ["t"] * 100}, engramdb.LimitExceeded),
        ({"content": "x", "dedup_threshold": 1.5}, engramdb.InvalidInput),
        (
            {
                "content": "x",
                "valid_from": "2026-01-02T00:00:00Z",
                "valid_to": "2026-01-01T00:00:00Z",
            },
            engramdb.InvalidInput,
        ),
    ],
)
def test_bad_input_is_refused_and_nothing_written(
    db: Engram, kwargs: dict[str, object], error: type[Exception]
) -> None:
    kwargs = dict(kwargs)  # the parameter dict is shared by every backend's run
    content = kwargs.pop("content")
    with pytest.raises(error):
        db.memories.add(content, **kwargs)  # type: ignore[arg-type]
    assert count(db, include_expired=True) == 0


def test_nan_vector_refused(db: Engram) -> None:
    vec = [float("nan")] * db.embedder.dimensions
    with pytest.raises(engramdb.InvalidInput):
        db.memories.add("x", embedding=vec)
    assert count(db) == 0


def test_text_and_numbers_come_back_as_given(db: Engram) -> None:
    """What JSON carries over HTTP survives unchanged: words that look like non-finite numbers
    (the client's encoder checks for those), non-ASCII text, big and exact numbers."""
    content = 'NaN, -Infinity and "Infinity" are words here; naïve café 😀 \u00e9'
    metadata = {"big": 2**70, "neg": -(2**63), "tiny": 5e-324, "pi": 3.141592653589793,
                "text": "NaN", "nested": [{"x": -0.5}]}  # fmt: skip
    vec = [0.1 * (i % 7) - 0.3 for i in range(db.embedder.dimensions)]
    made = db.memories.add(content, metadata=metadata, embedding=vec)
    got = db.memories.get(made.id)
    assert got.content == content
    assert got.metadata == metadata
    hits = db.memories.search(embedding=vec, mode="vector", top_k=1)
    assert [h.memory.id for h in hits] == [made.id]
    assert hits[0].memory.metadata == metadata


def test_metadata_json_cannot_hold_is_written_alike_or_refused(db: Engram) -> None:
    """Every backend stores a datetime in metadata as ISO text and a tuple as a list, and
    refuses NaN and infinities (which no JSON column stores) as invalid, with nothing written."""
    vec = [0.1 * (i % 5) for i in range(db.embedder.dimensions)]
    when = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    made = db.memories.add("typed", metadata={"when": when, "pair": (1, 2)}, embedding=vec)
    expected = {"when": "2026-01-02T03:04:05.678901Z", "pair": [1, 2]}
    assert made.metadata == db.memories.get(made.id).metadata == expected
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(engramdb.InvalidInput, match=r"must be JSON|NaN or infinite"):
            db.memories.add("not json", metadata={"x": [bad]}, embedding=vec)
    assert [m.content for m in db.memories.list().items] == ["typed"]


def test_given_vectors_are_stored_as_given_and_bad_ones_refused_by_item(
    db: Engram, backend: str
) -> None:
    """A vector given to add() or add_many() is checked against the space by itself (not by
    the model, float by float): numpy arrays, lists and tuples are stored as the same float32
    values; text, NaN, infinities, numbers beyond float32's range and the wrong dimension are
    refused naming the vector (and, in a batch, the item's index), with nothing written. (Over
    HTTP the request's own validation, or the client's, words some of these refusals.)"""
    dim = db.embedder.dimensions
    base = np.linspace(-1.0, 1.0, dim)
    made = [
        db.memories.add("numpy float32", embedding=base.astype(np.float32)),
        db.memories.add("numpy float64", embedding=base),
        db.memories.add("tuple", embedding=tuple(float(x) for x in base)),
        *db.memories.add_many(
            [
                {"content": "batch list", "embedding": base.tolist()},
                engramdb.MemoryInput(content="batch model", embedding=base.tolist()),
            ]
        ),
    ]
    for m in made:
        stored = db.memories.get(m.id, with_embedding=True).embedding
        assert stored is not None
        assert np.array_equal(np.asarray(stored, dtype=np.float32), base.astype(np.float32))

    bad_vectors = {
        "must be a list of numbers": ["x"] * dim,
        "NaN or infinite": [float("nan")] + [0.5] * (dim - 1),
        "beyond float32": np.full(dim, 1e39),
    }
    local = backend != "http"
    for message, bad in bad_vectors.items():
        with pytest.raises(
            engramdb.InvalidInput, match=f"^embedding .*{message}" if local else None
        ):
            db.memories.add("refused", embedding=bad)
        good = {"content": "fine", "embedding": base.tolist()}
        with pytest.raises(
            engramdb.InvalidInput, match=f"^item 1: embedding .*{message}" if local else None
        ) as info:
            db.memories.add_many([good, {"content": "refused", "embedding": bad}])
        if local:
            assert info.value.details["index"] == 1
    with pytest.raises(engramdb.DimensionMismatch) as mismatch:
        db.memories.add_many([{"content": "short", "embedding": [1.0, 0.0]}])
    assert mismatch.value.details["index"] == 0 and mismatch.value.details["got"] == 2
    assert len(db.memories.list(limit=50).items) == len(made)


def test_dimension_mismatch_error_is_clear(db: Engram) -> None:
    with pytest.raises(engramdb.DimensionMismatch) as info:
        db.memories.search(embedding=[1.0, 0.0], mode="vector")
    assert info.value.details["expected"] == db.embedder.dimensions
    assert info.value.details["got"] == 2
    assert "dimensions" in str(info.value)


def test_list_paginates_newest_first_over_many_pages(db: Engram) -> None:
    made = db.memories.add_many([{"content": f"item {i}", "agent_id": "pager"} for i in range(23)])
    seen: list[uuid.UUID] = []
    cursor = None
    pages = 0
    while True:
        page = db.memories.list(agent_id="pager", limit=5, cursor=cursor)
        seen.extend(m.id for m in page.items)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 5
    assert seen == sorted((m.id for m in made), reverse=True)


def test_bad_cursor_and_limit(db: Engram) -> None:
    with pytest.raises(engramdb.InvalidCursor):
        db.memories.list(cursor="garbage!")
    db.memories.add_many([{"content": f"c {i}", "agent_id": "a"} for i in range(3)])
    page = db.memories.list(agent_id="a", limit=1)
    assert page.next_cursor is not None
    with pytest.raises(engramdb.InvalidCursor):  # a cursor is bound to its listing
        db.memories.list(agent_id="b", limit=1, cursor=page.next_cursor)
    with pytest.raises(engramdb.InvalidInput):
        db.memories.list(limit=0)


def test_update_keeps_history(db: Engram) -> None:
    m = db.memories.add("Alice lives in Paris", user_id="alice", tags=["home"])
    u = db.memories.update(m.id, content="Alice lives in Lisbon", importance=0.9)
    assert u.version == 2 and u.content == "Alice lives in Lisbon" and u.importance == 0.9
    assert u.content_hash != m.content_hash
    u2 = db.memories.update(m.id, tags=["home", "city"], metadata={"checked": True})
    assert u2.version == 3 and u2.tags == ["home", "city"]
    hist = db.memories.history(m.id)
    assert [(v.version, v.event) for v in hist] == [(1, "update"), (2, "update"), (3, "current")]
    assert hist[0].memory.content == "Alice lives in Paris"
    assert hist[1].memory.content == "Alice lives in Lisbon"
    assert hist[2].memory == db.memories.get(m.id)
    # the new content is what search finds now
    hits = db.memories.search("Lisbon", mode="text")
    assert [h.memory.id for h in hits] == [m.id]
    assert db.memories.search("Paris", mode="text") == []


def test_update_refuses_bad_changes_and_changes_nothing(db: Engram) -> None:
    m = db.memories.add("fact", agent_id="a")
    with pytest.raises(engramdb.InvalidInput):
        db.memories.update(m.id, content="")
    with pytest.raises(engramdb.InvalidInput):
        db.memories.update(m.id, agent_id="other")
    with pytest.raises(engramdb.DimensionMismatch):
        db.memories.update(m.id, embedding=[1.0])
    with pytest.raises(engramdb.NotFound):
        db.memories.update(uuid.uuid4(), content="x")
    assert db.memories.get(m.id) == m
    assert len(db.memories.history(m.id)) == 1


def test_update_to_existing_content_in_scope_conflicts(db: Engram) -> None:
    db.memories.add("one", agent_id="a")
    two = db.memories.add("two", agent_id="a")
    with pytest.raises(engramdb.Conflict):
        db.memories.update(two.id, content="one")
    assert db.memories.get(two.id).content == "two"


def test_soft_delete_then_purge(db: Engram) -> None:
    m = db.memories.add("secret plan", agent_id="a")
    db.memories.delete(m.id)
    with pytest.raises(engramdb.NotFound):
        db.memories.get(m.id)
    assert db.memories.get(m.id, include_deleted=True).deleted_at is not None
    assert db.memories.search("secret plan", mode="text") == []
    assert count(db) == 0 and count(db, include_deleted=True) == 1
    assert db.memories.history(m.id)[-2].event == "delete"
    # the content can be stored again once the old copy is deleted
    again = db.memories.add("secret plan", agent_id="a")
    assert again.id != m.id
    db.memories.delete(m.id, purge=True)
    with pytest.raises(engramdb.NotFound):
        db.memories.get(m.id, include_deleted=True)
    with pytest.raises(engramdb.NotFound):
        db.memories.history(m.id)
    with pytest.raises(engramdb.NotFound):
        db.memories.delete(m.id, purge=True)
    with pytest.raises(engramdb.NotFound):
        db.memories.delete(m.id)


def test_search_modes_and_scores(db: Engram) -> None:
    db.memories.add_many(
        [
            {"content": "Alice prefers window seats on long flights", "agent_id": "travel-bot"},
            {"content": "Bob is allergic to peanuts", "agent_id": "travel-bot"},
            {"content": "The quarterly report is due on Friday", "agent_id": "office-bot"},
        ]
    )
    for mode in ("hybrid", "vector", "text"):
        hits = db.memories.search("window seats", mode=mode, top_k=2)
        assert hits, mode
        assert hits[0].memory.content.startswith("Alice"), mode
        assert all(0.0 <= h.score <= 1.0 for h in hits)
        assert hits == sorted(hits, key=lambda h: -h.score)
    hit = db.memories.search("window seats", mode="hybrid", explain=True)[0]
    assert {"vector", "text", "rrf", "vector_rank", "text_rank"} <= set(hit.scores)
    assert hit.score == pytest.approx(1.0)  # first in both lists
    scoped = db.memories.search("report", agent_id="travel-bot")
    assert all(h.memory.agent_id == "travel-bot" for h in scoped)


def test_vector_search_with_own_embedding_and_threshold(db: Engram) -> None:
    dim = db.embedder.dimensions
    basis = []
    for i in range(3):
        v = [0.0] * dim
        v[i] = 1.0
        basis.append(v)
    db.memories.add_many(
        [{"content": f"axis {i}", "embedding": v, "user_id": "alice"} for i, v in enumerate(basis)]
    )
    q = [0.0] * dim
    q[0], q[1] = 0.9, 0.1
    hits = db.memories.search(embedding=q, mode="vector", user_id="alice", top_k=3)
    assert [h.memory.content for h in hits] == ["axis 0", "axis 1", "axis 2"]
    assert hits[0].score == pytest.approx(0.9 / (0.81 + 0.01) ** 0.5, abs=1e-4)
    assert hits[2].score == pytest.approx(0.0)
    strict = db.memories.search(embedding=q, mode="vector", threshold=0.5)
    assert [h.memory.content for h in strict] == ["axis 0"]


def test_search_bad_input(db: Engram) -> None:
    with pytest.raises(engramdb.InvalidInput):
        db.memories.search("x", mode="fuzzy")
    with pytest.raises(engramdb.InvalidInput):
        db.memories.search("x", top_k=0)
    with pytest.raises(engramdb.InvalidInput):
        db.memories.search("x", threshold=-0.1)
    with pytest.raises(engramdb.InvalidInput):
        db.memories.search()
    with pytest.raises(engramdb.InvalidInput):
        db.memories.search(embedding=[0.0] * db.embedder.dimensions, mode="text")
    with pytest.raises(engramdb.InvalidFilter):
        db.memories.search("x", filters={"colour": "red"})
    with pytest.raises(engramdb.LimitExceeded):
        db.memories.search("x" * 9000)


def test_filters(db: Engram) -> None:
    now = datetime.now(UTC)
    db.memories.add_many(
        [
            {"content": "error: disk full", "kind": "episodic", "agent_id": "ops", "importance": 0.9,
             "tags": ["disk", "error"], "metadata": {"host": "a", "n": 5}, "data": {"event_type": "error"}},
            {"content": "error: timeout", "kind": "episodic", "agent_id": "ops", "importance": 0.4,
             "tags": ["net", "error"], "metadata": {"host": "b", "n": 7}, "data": {"event_type": "error"}},
            {"content": "deploy finished", "kind": "episodic", "agent_id": "ops", "importance": 0.5,
             "tags": ["deploy"], "metadata": {"host": "a", "n": "7"}, "data": {"event_type": "info"}},
            {"content": "ops prefers terse reports", "kind": "semantic", "agent_id": "ops"},
        ]
    )  # fmt: skip

    def contents(**kw: object) -> set[str]:
        return {m.content for m in db.memories.list(limit=100, **kw).items}  # type: ignore[arg-type]

    assert contents(kind="episodic", filters={"importance": {"$gte": 0.75}}) == {"error: disk full"}
    assert contents(filters={"data.event_type": "error"}) == {"error: disk full", "error: timeout"}
    assert contents(tags=["net", "deploy"]) == {"error: timeout", "deploy finished"}
    assert contents(filters={"tags": ["disk", "error"]}) == {"error: disk full"}
    assert contents(filters={"tags": {"$none": ["error"]}}) == {
        "deploy finished", "ops prefers terse reports"}  # fmt: skip
    assert contents(filters={"metadata.host": "a"}) == {"error: disk full", "deploy finished"}
    # comparisons only match values of the same JSON type: the string "7" is not > 6
    assert contents(filters={"metadata.n": {"$gt": 6}}) == {"error: timeout"}
    assert contents(filters={"metadata": {"$contains": {"host": "b"}}}) == {"error: timeout"}
    assert contents(filters={"metadata.n": {"$in": [5, "7"]}}) == {
        "error: disk full",
        "deploy finished",
    }
    assert contents(filters={"metadata.host": {"$exists": False}}) == {"ops prefers terse reports"}
    assert contents(filters={"$or": [{"importance": {"$lt": 0.45}}, {"kind": "semantic"}]}) == {
        "error: timeout",
        "ops prefers terse reports",
    }
    assert contents(filters={"$not": {"kind": "episodic"}}) == {"ops prefers terse reports"}
    assert contents(filters={"created_at": {"$gte": (now - timedelta(minutes=5)).isoformat()}}) == {
        "error: disk full", "error: timeout", "deploy finished", "ops prefers terse reports"}  # fmt: skip
    assert contents(filters={"created_at": {"$lt": (now - timedelta(days=1)).isoformat()}}) == set()
    assert contents(filters={"user_id": {"$exists": True}}) == set()
    assert contents(filters={"agent_id": {"$ne": "ops"}}) == set()
    hits = db.memories.search("error", kind="episodic", filters={"metadata.host": "b"})
    assert [h.memory.content for h in hits] == ["error: timeout"]


@pytest.mark.parametrize(
    "bad",
    [
        {"nope": 1},
        {"importance": {"$regex": "x"}},
        {"importance": "very high"},  # level names (low … critical) are accepted
        {"tags": {"$gt": "a"}},
        {"metadata.a b": 1},
        {"metadata": {"x": 1}},
        {"$or": []},
        {"$xor": [{"kind": "a"}]},
        {"created_at": {"$gt": "yesterday"}},
        {"metadata.k": {"$in": "notalist"}},
    ],
)
def test_bad_filters_are_refused(db: Engram, bad: dict[str, object]) -> None:
    with pytest.raises(engramdb.InvalidFilter):
        db.memories.list(filters=bad)


def test_expiry_and_validity(db: Engram) -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    db.memories.add("temporary note", agent_id="a", expires_at=past)
    db.memories.add(
        "old address", agent_id="a", valid_from=past - timedelta(days=30), valid_to=past
    )
    db.memories.add("current address", agent_id="a", valid_from=past)
    assert {m.content for m in db.memories.list(agent_id="a").items} == {"current address"}
    assert "temporary note" in {
        m.content for m in db.memories.list(agent_id="a", include_expired=True).items
    }
    then = past - timedelta(days=2)
    assert {m.content for m in db.memories.list(agent_id="a", as_of=then).items} == {"old address"}
    hits = db.memories.search("address", mode="text", as_of=then)
    assert [h.memory.content for h in hits] == ["old address"]


def test_filtered_top_k_finds_a_small_scope_among_many(db: Engram) -> None:
    """One agent's few memories must all be findable even when others own most of the table."""
    others = [
        {"content": f"generic chatter {i} about many things", "agent_id": f"crowd-{i % 7}"}
        for i in range(1500)
    ]
    mine = [{"content": f"needle fact {i}", "agent_id": "needle"} for i in range(8)]
    db.memories.add_many(others)
    db.memories.add_many(mine)
    for exact in (None, False, True):
        hits = db.memories.search(
            "generic chatter about things", mode="vector", agent_id="needle", top_k=10, exact=exact
        )
        assert sorted(h.memory.content for h in hits) == sorted(m["content"] for m in mine), exact


def test_access_counts_are_recorded_off_the_read_path(db: Engram) -> None:
    m = db.memories.add("remember me", agent_id="a")
    db.memories.search("remember me", agent_id="a")
    db.memories.get(m.id)
    db.flush()
    got = db.memories.get(m.id)
    assert got.access_count == 2
    assert got.last_accessed_at is not None


def test_organizations_are_isolated(db: Engram) -> None:
    m = db.memories.add("default org fact", agent_id="a")
    other = db.for_organization("acme")
    o = other.memories.add("acme fact", agent_id="a")
    assert o.organization_id == "acme"
    with pytest.raises(engramdb.NotFound):
        other.memories.get(m.id)
    with pytest.raises(engramdb.NotFound):
        db.memories.get(o.id)
    with pytest.raises(engramdb.NotFound):
        other.memories.update(m.id, content="hijack")
    with pytest.raises(engramdb.NotFound):
        other.memories.delete(m.id, purge=True)
    assert [h.memory.id for h in other.memories.search("fact")] == [o.id]
    assert [x.id for x in other.memories.list().items] == [o.id]
    assert db.memories.get(m.id).content == "default org fact"


def test_async_face_has_the_same_methods(
    backend: str, request: pytest.FixtureRequest, tmp_path: object
) -> None:
    import asyncio

    from tests.conftest import open_backend

    sync = open_backend(backend, request, tmp_path)  # type: ignore[arg-type]

    async def main() -> None:
        db = engramdb.AsyncEngram(sync)
        m = await db.memories.add("async memory", agent_id="a")
        assert (await db.memories.get(m.id)).content == "async memory"
        hits = await db.memories.search("async memory", agent_id="a")
        assert hits[0].memory.id == m.id
        page = await db.memories.list(agent_id="a")
        assert [x.id for x in page.items] == [m.id]
        await db.memories.update(m.id, content="async memory, changed")
        assert len(await db.memories.history(m.id)) == 2
        with pytest.raises(engramdb.NotFound):
            await db.memories.get(uuid.uuid4())
        await db.memories.delete(m.id, purge=True)
        await db.close()

    asyncio.run(main())
