"""What each remote method sends and how its answer is read: one description per method, run
by the sync client and the async client alike (so the two faces cannot drift apart)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from ..errors import EngramError, error_for_code
from ..models import Memory, MemoryVersion, Page, SearchHit
from .transport import HttpReply

__all__ = ["Call", "MemoryCalls", "NamedCalls", "jsonable", "raise_for_error"]


@dataclasses.dataclass(frozen=True)
class Call:
    """One HTTP request and the function that turns its JSON answer into the method's result."""

    method: str
    path: str
    parse: Callable[[Any], Any] = lambda body: body
    params: list[tuple[str, str]] | None = None
    json: Any = None
    #: Reads the answer's bytes itself, when given (``parse`` is then unused): pydantic
    #: validating straight from JSON skips building the intermediate dicts and lists, about
    #: 50 µs of a search's ten hits on the benchmark machine.
    parse_json: Callable[[bytes], Any] | None = None


#: Values JSON takes as they are (exact types: a subclass such as an IntEnum is converted).
_PLAIN = (str, int, float, bool, type(None))
_PLAIN_TYPES = frozenset(_PLAIN)


class _Results(BaseModel):
    results: list[SearchHit]


def _search_hits(raw: bytes) -> list[SearchHit]:
    return _Results.model_validate_json(raw).results


def jsonable(value: Any) -> Any:
    """Library arguments as JSON: datetimes, UUIDs, numpy vectors, dataclasses (Weights)."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is list or kind is tuple:
        # A vector given as a list: one pass over it in C, not a call per number.
        if _PLAIN_TYPES.issuperset(map(type, value)):
            return list(value)
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_unset=True)
    return to_jsonable_python(value)


def _query(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, value in values.items():
        if value is None:
            continue
        if name == "filters":
            out.append((name, json.dumps(jsonable(value))))
        elif isinstance(value, bool):
            out.append((name, "true" if value else "false"))
        elif isinstance(value, list | tuple | set | frozenset):
            out.extend((name, str(v)) for v in value)
        else:
            j = jsonable(value)
            out.append((name, j if isinstance(j, str) else json.dumps(j)))
    return out


def _seg(value: Any) -> str:
    """A path segment: ids are quoted, so a malformed one reaches the server's validation."""
    return quote(str(value), safe="")


def _page(parse_item: Callable[[Any], Any]) -> Callable[[Any], Page[Any]]:
    def parse(body: Any) -> Page[Any]:
        return Page(items=[parse_item(i) for i in body["items"]], next_cursor=body["next_cursor"])

    return parse


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: jsonable(v) for k, v in values.items() if v is not None}


def raise_for_error(response: HttpReply) -> None:
    """Raise the engramdb exception the server reported (the same class as in-process)."""
    if response.status_code < 400:
        return
    try:
        err = response.json()["error"]
        exc: EngramError = error_for_code(
            str(err["code"]), str(err["message"]), err.get("details") or {}
        )
    except (ValueError, KeyError, TypeError):
        exc = error_for_code(
            "unavailable" if response.status_code >= 500 else "bad_request",
            f"HTTP {response.status_code} from the server: {response.text[:200]}",
        )
    raise exc


class MemoryCalls:
    """``db.memories`` over HTTP: the same methods and arguments as the in-process library."""

    def add(self, content: str, **fields: Any) -> Call:
        return Call("POST", "/v1/memories", json={"content": content, **_drop_none(fields)},
                    parse_json=Memory.model_validate_json)  # fmt: skip

    def add_many(self, items: Iterable[Any], *, embed_batch_size: int | None = None) -> Call:
        del embed_batch_size  # the server embeds in its own batches
        body = [jsonable(i) for i in items]
        for item in body:
            if isinstance(item, dict):
                for k in [k for k, v in item.items() if v is None]:
                    del item[k]
        return Call("POST", "/v1/memories", lambda b: [Memory.model_validate(m) for m in b["items"]],
                    json={"items": body})  # fmt: skip

    def get(
        self, memory_id: uuid.UUID | str, *, include_deleted: bool = False,
        with_embedding: bool = False,
    ) -> Call:  # fmt: skip
        params = _query({"include_deleted": include_deleted, "with_embedding": with_embedding})
        return Call("GET", f"/v1/memories/{_seg(memory_id)}", Memory.model_validate, params)

    def update(
        self, memory_id: uuid.UUID | str, *, content: str | None = None, **changes: Any
    ) -> Call:
        body = {k: jsonable(v) for k, v in changes.items()}
        if content is not None:
            body["content"] = content
        return Call("PATCH", f"/v1/memories/{_seg(memory_id)}", Memory.model_validate, json=body)

    def delete(self, memory_id: uuid.UUID | str, *, purge: bool = False) -> Call:
        return Call("DELETE", f"/v1/memories/{_seg(memory_id)}", lambda _b: None,
                    _query({"purge": purge}))  # fmt: skip

    def history(self, memory_id: uuid.UUID | str) -> Call:
        return Call("GET", f"/v1/memories/{_seg(memory_id)}/history",
                    lambda b: [MemoryVersion.model_validate(v) for v in b["items"]])  # fmt: skip

    def list(self, **options: Any) -> Call:
        return Call("GET", "/v1/memories", _page(Memory.model_validate), _query(options))

    def search(self, query: str | None = None, **options: Any) -> Call:
        body = _drop_none(options)
        if query is not None:
            body["query"] = query
        return Call("POST", "/v1/memories/search", json=body, parse_json=_search_hits)


class NamedCalls:
    """A named resource (``db.users``, ``db.agents``, ``db.rooms``): add, get, update, delete,
    list; results come back as the library's models."""

    def __init__(self, name: str, model: Callable[[Any], Any]) -> None:
        self._name = name
        self._model = model

    def add(self, id: str, **fields: Any) -> Call:
        return Call("POST", f"/v1/{self._name}", self._model, json={"id": id, **jsonable(fields)})

    def get(self, id: str, *, include_deleted: bool = False) -> Call:
        return Call("GET", f"/v1/{self._name}/{_seg(id)}", self._model,
                    _query({"include_deleted": include_deleted}))  # fmt: skip

    def update(self, id: str, **changes: Any) -> Call:
        return Call("PATCH", f"/v1/{self._name}/{_seg(id)}", self._model, json=jsonable(changes))

    def delete(self, id: str, *, purge: bool = False) -> Call:
        return Call("DELETE", f"/v1/{self._name}/{_seg(id)}", lambda _b: None,
                    _query({"purge": purge}))  # fmt: skip

    def list(self, **options: Any) -> Call:
        return Call("GET", f"/v1/{self._name}", _page(self._model), _query(options))


def named_models() -> dict[str, Callable[[Any], Any]]:
    """Models of the named resources the client knows; others come back as plain dicts."""
    out: dict[str, Callable[[Any], Any]] = {}
    try:
        from ..models.agents import Agent, Room, User
    except ImportError:  # pragma: no cover - older library
        return out
    out.update(users=User.model_validate, agents=Agent.model_validate, rooms=Room.model_validate)
    return out


class EngramCalls:
    """Calls of the connection itself: who am I, flush, keys for views of other organizations."""

    def info(self) -> Call:
        return Call("GET", "/v1/info")

    def flush(self) -> Call:
        return Call("POST", "/v1/flush", lambda _b: None)

    def view_key(self, organization: str, name: str) -> Call:
        body = {"name": name, "organization_id": organization, "tier": "enterprise",
                "scopes": ["read", "write", "admin"]}  # fmt: skip
        return Call("POST", "/v1/keys", json=body)

    def revoke_key(self, key_id: str) -> Call:
        return Call("DELETE", f"/v1/keys/{_seg(key_id)}", lambda _b: None)
