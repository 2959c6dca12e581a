"""The generic service behind every resource: validation, limits, ids, keyset pages."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Generic

from pydantic import ValidationError

from ..errors import InvalidInput, LimitExceeded
from ..models import Page, new_id, utcnow
from ..models.common import json_size
from ..settings import Limits
from ..store.resources import R, ResourceSpec, Where
from .engine import Engine, invalid_from_validation
from .pagination import decode_cursor, encode_cursor, listing_key

__all__ = ["ResourceService", "as_uuid", "ids_at"]

#: Columns the store fills; a caller cannot set them.
SYSTEM_COLUMNS = frozenset(
    {"organization_id", "created_at", "updated_at", "created_by_id", "last_updated_by_id",
     "deleted_at", "version"}
)  # fmt: skip
_PLACEHOLDER_TIMES = ("created_at", "updated_at", "joined_at", "started_at")
_SMALL_JSON = frozenset({"metadata", "details"})

_id_lock = threading.Lock()
_last_id = 0


def as_uuid(value: uuid.UUID | str, what: str = "id") -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidInput(
            f"{what} {value!r} is not a valid id", details={what: str(value)}
        ) from None


def ids_at(moments: Sequence[datetime | None]) -> list[uuid.UUID]:
    """Time-ordered UUIDv7s for the given moments (``None``: now), strictly increasing within a
    batch and, for moments of "now", across calls, so ids list in the order things happened."""
    global _last_id
    out: list[uuid.UUID] = []
    prev = 0
    with _id_lock:
        for moment in moments:
            if moment is None:
                value = new_id().int
                value = max(value, _last_id + 1)
                _last_id = value
            else:
                ms = int(moment.timestamp() * 1000) & ((1 << 48) - 1)
                rand = int.from_bytes(os.urandom(10), "big")
                value = (ms << 80) | (0x7 << 76) | (((rand >> 62) & 0xFFF) << 64)
                value |= (0b10 << 62) | (rand & ((1 << 62) - 1))
            if value <= prev and (value >> 80) == (prev >> 80):
                value = prev + 1
            prev = value
            out.append(uuid.UUID(int=value))
    return out


class ResourceService(Generic[R]):
    """Base of ``db.users``, ``db.blocks``, …: one organization's view of one resource."""

    spec: ResourceSpec[R]

    def __init__(self, engine: Engine, organization: str, actor: str | None = None) -> None:
        self._engine = engine
        self._org = organization
        self._actor = actor

    @property
    def _store(self) -> Any:
        return self._engine.store

    @property
    def _limits(self) -> Limits:
        return self._engine.settings.limits

    # -- validation -----------------------------------------------------------------------------

    def _check(
        self, values: Mapping[str, Any], current: R | None = None, what: str | None = None
    ) -> dict[str, Any]:
        """Validate ``values`` against the resource's model (merged over ``current`` for an
        update) and the size limits; returns them as the store takes them."""
        label = what or self.spec.name
        bad = set(values) & SYSTEM_COLUMNS
        if bad:
            raise InvalidInput(
                f"{label}: {sorted(bad)} cannot be set", details={"fields": sorted(bad)}
            )
        self._check_sizes(values, label)
        if current is not None:
            candidate = current.model_dump()
        else:
            now = utcnow()
            candidate = {"organization_id": self._org}
            fields = self.spec.model.model_fields
            for name in _PLACEHOLDER_TIMES:
                if name in fields:
                    candidate[name] = now
            if "id" in fields and self.spec.key == ("id",) and "id" not in values:
                candidate["id"] = new_id()
        candidate.update(values)
        try:
            checked = self.spec.model.model_validate(candidate)
        except ValidationError as exc:
            raise invalid_from_validation(exc, label) from None
        out: dict[str, Any] = {}
        for name in values:
            if name in self.spec.json_columns:
                out[name] = checked.model_dump(mode="json", include={name})[name]
            else:
                out[name] = getattr(checked, name)
        return out

    def _check_sizes(self, values: Mapping[str, Any], label: str) -> None:
        lim = self._limits
        for name, value in values.items():
            if isinstance(value, str) and len(value) > lim.max_content_chars:
                raise LimitExceeded(
                    f"{label}: {name} has {len(value)} characters; the limit is "
                    f"{lim.max_content_chars}",
                    details={"field": name, "limit": lim.max_content_chars},
                )
            if name in self.spec.json_columns and value is not None:
                limit = lim.max_metadata_bytes if name in _SMALL_JSON else 4 * lim.max_content_chars
                try:
                    size = json_size(value)
                except (TypeError, ValueError):
                    raise InvalidInput(f"{label}: {name} must be JSON") from None
                if size > limit:
                    raise LimitExceeded(
                        f"{label}: {name} is {size} bytes as JSON; the limit is {limit}",
                        details={"field": name, "limit": limit},
                    )

    def _key(self, *values: Any) -> tuple[Any, ...]:
        """The key as the store takes it: uuid fields parsed (refused loudly if malformed)."""
        out = []
        for name, value in zip(self.spec.key, values, strict=True):
            ann = self.spec.model.model_fields[name].annotation
            out.append(as_uuid(value, name) if ann is uuid.UUID else value)
        return tuple(out)

    # -- generic verbs ----------------------------------------------------------------------------

    def _insert(self, values: Mapping[str, Any]) -> R:
        [row] = self._store.insert_resources(self._org, self.spec, [values], actor=self._actor)
        return row  # type: ignore[no-any-return]

    def _get(self, *key: Any, include_deleted: bool = False) -> R:
        got: R = self._store.get_resource(
            self._org, self.spec, self._key(*key), include_deleted=include_deleted
        )
        return got

    def _update(self, key: Sequence[Any], changes: Mapping[str, Any], **kw: Any) -> R:
        if not changes:
            return self._get(*key)
        row: R = self._store.update_resource(
            self._org, self.spec, self._key(*key), changes, actor=self._actor, **kw
        )
        return row

    def _patch(self, key: Sequence[Any], changes: Mapping[str, Any]) -> R:
        """Validate ``changes`` over the current row, then apply them."""
        current = self._get(*key)
        checked = self._check(changes, current)
        return self._update(key, checked)

    def _delete(self, *key: Any, purge: bool = False) -> None:
        self._store.delete_resource(
            self._org, self.spec, self._key(*key), purge=purge, actor=self._actor
        )

    def _page(
        self,
        where: Sequence[Where],
        *,
        limit: int,
        cursor: str | None,
        descending: bool = False,
        include_deleted: bool = False,
    ) -> Page[R]:
        if not 1 <= limit <= self._limits.max_page:
            raise InvalidInput(f"limit must be between 1 and {self._limits.max_page}")
        lk = listing_key(
            [self._org, self.spec.table, [(w.column, w.op, w.value) for w in where], descending,
             include_deleted]
        )  # fmt: skip
        after = None
        if cursor is not None:
            raw = decode_cursor(cursor, lk)
            try:
                after = self._key(*json.loads(raw))
            except (ValueError, TypeError):
                from ..errors import InvalidCursor

                raise InvalidCursor("the cursor is not one this listing produced") from None
        rows: list[R] = self._store.list_resources(
            self._org, self.spec, where, limit=limit + 1, after=after, descending=descending,
            include_deleted=include_deleted,
        )  # fmt: skip
        items = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            last = [str(getattr(items[-1], k)) for k in self.spec.key]
            next_cursor = encode_cursor(json.dumps(last), lk)
        return Page(items=items, next_cursor=next_cursor)


def scope_where(**scopes: Any) -> list[Where]:
    """Equality conditions for the scope arguments that are set (a list means any of them)."""
    out: list[Where] = []
    for name, value in scopes.items():
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset):
            out.append(Where(name, "in", list(value)))
        else:
            out.append(Where(name, "eq", value))
    return out
