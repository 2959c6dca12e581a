"""Generic resource operations on SQLite: one implementation for every ResourceSpec.

Values are stored as the schema package says (UUIDs as 16-byte BLOBs, times as integer
microseconds, JSON as TEXT, booleans as integers); each column's codec comes from the type of
the model field it fills, so a new resource needs no code here.
"""

from __future__ import annotations

import json
import sqlite3
import types
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...errors import Conflict, NotFound
from ...models.blocks import ResourceVersion
from ..resources import R, ResourceSpec, Where
from .schema import NOW_US
from .values import from_micros, to_json, to_micros

__all__ = ["SQLiteResources"]

_CMP = {"eq": "=", "ne": "IS NOT", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
Codec = tuple[Callable[[Any], Any], Callable[[Any], Any]]


def _plain(value: Any) -> Any:
    return value


def _uuid_in(value: Any) -> Any:
    if value is None:
        return None
    return (value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))).bytes


def _uuid_out(value: Any) -> Any:
    return None if value is None else uuid.UUID(bytes=bytes(value))


def _time_in(value: Any) -> Any:
    return to_micros(value) if isinstance(value, datetime) else value


def _bool_in(value: Any) -> Any:
    return None if value is None else int(bool(value))


def _bool_out(value: Any) -> Any:
    return None if value is None else bool(value)


def _json_in(value: Any) -> Any:
    return None if value is None else to_json(value)


def _json_out(value: Any) -> Any:
    return None if value is None else json.loads(value)


def _base_type(annotation: Any) -> Any:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else None
    return annotation


_CODECS: dict[str, dict[str, Codec]] = {}


def _codecs(spec: ResourceSpec[Any]) -> dict[str, Codec]:
    cached = _CODECS.get(spec.table)
    if cached is not None:
        return cached
    out: dict[str, Codec] = {}
    for name, info in spec.model.model_fields.items():
        base = _base_type(info.annotation)
        if name in spec.json_columns:
            out[name] = (_json_in, _json_out)
        elif base is uuid.UUID:
            out[name] = (_uuid_in, _uuid_out)
        elif base is datetime:
            out[name] = (_time_in, from_micros)
        elif base is bool:
            out[name] = (_bool_in, _bool_out)
        else:
            out[name] = (_plain, _plain)
    _CODECS[spec.table] = out
    return out


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _cols(spec: ResourceSpec[Any]) -> str:
    return ", ".join(_q(c) for c in spec.columns)


def _enc(spec: ResourceSpec[Any], column: str, value: Any) -> Any:
    return _codecs(spec)[column][0](value)


def _model(spec: ResourceSpec[R], names: Sequence[str], row: Sequence[Any]) -> R:
    codecs = _codecs(spec)
    values = {n: codecs[n][1](v) for n, v in zip(names, row, strict=True)}
    return spec.model.model_validate(values)


def _not_found(spec: ResourceSpec[Any], key: Sequence[Any]) -> NotFound:
    shown = ", ".join(str(k) for k in key)
    return NotFound(
        f"{spec.name} {shown} not found",
        details={"resource": spec.name, "key": [str(k) for k in key]},
    )


def _key_cond(spec: ResourceSpec[Any], key: Sequence[Any], params: list[Any]) -> str:
    if len(key) != len(spec.key):
        raise ValueError(f"{spec.table} is keyed by {spec.key}")
    params.extend(_enc(spec, c, v) for c, v in zip(spec.key, key, strict=True))
    return " AND ".join(f"{_q(c)} = ?" for c in spec.key)


def _where(spec: ResourceSpec[Any], where: Sequence[Where], params: list[Any]) -> str:
    parts: list[str] = []
    for w in where:
        spec.check_columns(w.columns)
        alts: list[str] = []
        for column in w.columns:
            col = _q(column)
            if w.op == "null" or (w.op == "eq" and w.value is None):
                alts.append(f"{col} IS NULL")
            elif w.op == "not_null":
                alts.append(f"{col} IS NOT NULL")
            elif w.op == "in":
                values = [_enc(spec, column, v) for v in w.value]
                if not values:
                    alts.append("0")
                    continue
                params.extend(values)
                alts.append(f"{col} IN ({', '.join('?' * len(values))})")
            else:
                params.append(_enc(spec, column, w.value))
                alts.append(f"{col} {_CMP[w.op]} ?")
        parts.append("(" + " OR ".join(alts) + ")")
    return " AND ".join(parts) if parts else "1"


class SQLiteResources:
    """Mixed into :class:`SQLiteStore`; relies on its ``db`` (read / write transactions)."""

    if TYPE_CHECKING:

        @property
        def db(self) -> Any: ...

    def _write(self, spec: ResourceSpec[Any]) -> AbstractContextManager[sqlite3.Connection]:
        return _Renamed(self.db.write(), spec)

    @staticmethod
    def _register(
        conn: sqlite3.Connection,
        org: str,
        spec: ResourceSpec[Any],
        rows: Sequence[Mapping[str, Any]],
    ) -> None:
        for column, table in spec.registers.items():
            ids = sorted({r[column] for r in rows if r.get(column) is not None})
            conn.executemany(
                f"INSERT INTO {_q(table)} (organization_id, id) VALUES (?, ?) "
                "ON CONFLICT DO NOTHING",
                [(org, i) for i in ids],
            )

    @staticmethod
    def _audit(spec: ResourceSpec[Any], values: dict[str, Any], actor: str | None) -> None:
        cols = set(spec.columns)
        for name in ("created_by_id", "last_updated_by_id"):
            if name in cols and name not in values:
                values[name] = actor

    def insert_resources(
        self,
        org: str,
        spec: ResourceSpec[R],
        rows: Sequence[Mapping[str, Any]],
        *,
        actor: str | None,
    ) -> list[R]:
        if not rows:
            return []
        prepared = []
        for row in rows:
            values = {k: v for k, v in row.items() if k != "organization_id"}
            self._audit(spec, values, actor)
            spec.check_columns(values)
            prepared.append(values)
        out: list[R] = []
        with self._write(spec) as conn:
            self._register(conn, org, spec, prepared)
            for values in prepared:
                names = list(values)
                cur = conn.execute(
                    f"INSERT INTO {_q(spec.table)} (organization_id, "
                    f"{', '.join(_q(n) for n in names)}) VALUES (?, {', '.join('?' * len(names))}) "
                    f"RETURNING {_cols(spec)}",
                    [org, *(_enc(spec, n, values[n]) for n in names)],
                )
                out.append(_model(spec, spec.columns, cur.fetchone()))
        return out

    def _select_one(
        self, conn: sqlite3.Connection, org: str, spec: ResourceSpec[R], key: Sequence[Any]
    ) -> R | None:
        params: list[Any] = [org]
        cond = _key_cond(spec, key, params)
        row = conn.execute(
            f"SELECT {_cols(spec)} FROM {_q(spec.table)} WHERE organization_id = ? AND {cond}",
            params,
        ).fetchone()
        return None if row is None else _model(spec, spec.columns, row)

    def get_resource(
        self,
        org: str,
        spec: ResourceSpec[R],
        key: Sequence[Any],
        *,
        include_deleted: bool = False,
    ) -> R:
        with self.db.read() as conn:
            found = self._select_one(conn, org, spec, key)
        if found is None or (
            spec.soft_delete
            and getattr(found, "deleted_at", None) is not None
            and not include_deleted
        ):
            raise _not_found(spec, key)
        return found

    def list_resources(
        self,
        org: str,
        spec: ResourceSpec[R],
        where: Sequence[Where],
        *,
        limit: int,
        after: Sequence[Any] | None = None,
        descending: bool = False,
        include_deleted: bool = False,
    ) -> list[R]:
        params: list[Any] = [org]
        sql = f"SELECT {_cols(spec)} FROM {_q(spec.table)} WHERE organization_id = ? AND "
        sql += _where(spec, where, params)
        if spec.soft_delete and not include_deleted:
            sql += " AND deleted_at IS NULL"
        if after is not None:
            keys = ", ".join(_q(k) for k in spec.key)
            sql += f" AND ({keys}) {'<' if descending else '>'} ({', '.join('?' * len(spec.key))})"
            params.extend(_enc(spec, c, v) for c, v in zip(spec.key, after, strict=True))
        direction = " DESC" if descending else ""
        sql += " ORDER BY " + ", ".join(_q(k) + direction for k in spec.key) + " LIMIT ?"
        params.append(limit)
        with self.db.read() as conn:
            return [_model(spec, spec.columns, r) for r in conn.execute(sql, params)]

    def update_resource(
        self,
        org: str,
        spec: ResourceSpec[R],
        key: Sequence[Any],
        changes: Mapping[str, Any],
        *,
        actor: str | None,
        expect_version: int | None = None,
        event: str = "update",
        include_deleted: bool = False,
    ) -> R:
        spec.check_columns(changes)
        cols = set(spec.columns)
        sets = [f"{_q(n)} = ?" for n in changes]
        params: list[Any] = [_enc(spec, n, v) for n, v in changes.items()]
        if spec.versioned:
            sets.append("version = version + 1")
        if "updated_at" in cols:
            sets.append(f"updated_at = {NOW_US}")
        if "last_updated_by_id" in cols:
            sets.append("last_updated_by_id = ?")
            params.append(actor)
        with self._write(spec) as conn:
            old = self._select_one(conn, org, spec, key)
            live = old is not None and (
                not spec.soft_delete or include_deleted or getattr(old, "deleted_at", None) is None
            )
            if old is None or not live:
                raise _not_found(spec, key)
            if expect_version is not None and getattr(old, "version", None) != expect_version:
                version = getattr(old, "version", None)
                raise Conflict(
                    f"{spec.name} {key[0]} changed meanwhile (version {version}, expected "
                    f"{expect_version}); read it again and retry",
                    details={"version": version, "expected": expect_version},
                )
            if not sets:
                return old
            if spec.history_table is not None:
                conn.execute(
                    f"INSERT INTO {_q(spec.history_table)} (organization_id, id, resource_id, "
                    "version, event, snapshot, changed_by_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        org, uuid.uuid4().bytes, _enc(spec, "id", key[0]),
                        getattr(old, "version", 1), event, to_json(old.model_dump(mode="json")),
                        actor,
                    ),
                )  # fmt: skip
            key_params: list[Any] = []
            cond = _key_cond(spec, key, key_params)
            row = conn.execute(
                f"UPDATE {_q(spec.table)} SET {', '.join(sets)} WHERE organization_id = ? "
                f"AND {cond} RETURNING {_cols(spec)}",
                [*params, org, *key_params],
            ).fetchone()
        return _model(spec, spec.columns, row)

    def delete_resource(
        self,
        org: str,
        spec: ResourceSpec[R],
        key: Sequence[Any],
        *,
        purge: bool,
        actor: str | None,
    ) -> None:
        if spec.soft_delete and not purge:
            from ...models import utcnow

            self.update_resource(
                org, spec, key, {"deleted_at": utcnow()}, actor=actor, event="delete"
            )
            return
        params: list[Any] = [org]
        cond = _key_cond(spec, key, params)
        with self._write(spec) as conn:
            cur = conn.execute(
                f"DELETE FROM {_q(spec.table)} WHERE organization_id = ? AND {cond}", params
            )
            if cur.rowcount == 0:
                raise _not_found(spec, key)

    def delete_resources(
        self,
        org: str,
        spec: ResourceSpec[R],
        where: Sequence[Where],
        *,
        purge: bool,
        actor: str | None,
    ) -> int:
        params: list[Any] = []
        if spec.soft_delete and not purge:
            head = (
                f"UPDATE {_q(spec.table)} SET deleted_at = {NOW_US}, updated_at = {NOW_US}, "
                "last_updated_by_id = ? "
            )
            params.append(actor)
            tail = " AND deleted_at IS NULL"
        else:
            head, tail = f"DELETE FROM {_q(spec.table)} ", ""
        params.append(org)
        cond = _where(spec, where, params)
        with self._write(spec) as conn:
            cur = conn.execute(f"{head}WHERE organization_id = ? AND {cond}{tail}", params)
            return int(cur.rowcount)

    def upsert_resource(
        self, org: str, spec: ResourceSpec[R], values: Mapping[str, Any], *, actor: str | None
    ) -> R:
        data = {k: v for k, v in values.items() if k != "organization_id"}
        spec.check_columns(data)
        cols = set(spec.columns)
        insert = dict(data)
        self._audit(spec, insert, actor)
        names = list(insert)
        updates = [f"{_q(c)} = excluded.{_q(c)}" for c in data if c not in spec.key]
        if "deleted_at" in cols:
            updates.append("deleted_at = NULL")
        if "updated_at" in cols:
            updates.append(f"updated_at = {NOW_US}")
        if "last_updated_by_id" in cols:
            updates.append("last_updated_by_id = excluded.last_updated_by_id")
        if spec.versioned:
            updates.append("version = version + 1")
        if not updates:
            updates.append("organization_id = excluded.organization_id")
        with self._write(spec) as conn:
            self._register(conn, org, spec, [data])
            row = conn.execute(
                f"INSERT INTO {_q(spec.table)} (organization_id, {', '.join(_q(n) for n in names)}) "
                f"VALUES (?, {', '.join('?' * len(names))}) "
                f"ON CONFLICT (organization_id, {', '.join(_q(k) for k in spec.key)}) "
                f"DO UPDATE SET {', '.join(updates)} RETURNING {_cols(spec)}",
                [org, *(_enc(spec, n, insert[n]) for n in names)],
            ).fetchone()
        return _model(spec, spec.columns, row)

    def count_resources(
        self,
        org: str,
        spec: ResourceSpec[R],
        where: Sequence[Where],
        *,
        group_by: Sequence[str],
    ) -> list[tuple[tuple[Any, ...], int]]:
        spec.check_columns(group_by)
        params: list[Any] = [org]
        cond = _where(spec, where, params)
        live = " AND deleted_at IS NULL" if spec.soft_delete else ""
        groups = ", ".join(_q(g) for g in group_by)
        select = f"{groups}, " if group_by else ""
        group = f" GROUP BY {groups}" if group_by else ""
        codecs = _codecs(spec)
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT {select}count(*) FROM {_q(spec.table)} WHERE organization_id = ? "
                f"AND {cond}{live}{group}",
                params,
            ).fetchall()
        return [
            (tuple(codecs[g][1](v) for g, v in zip(group_by, r[:-1], strict=True)), int(r[-1]))
            for r in rows
        ]

    def resource_history(
        self, org: str, spec: ResourceSpec[R], key: Sequence[Any]
    ) -> list[ResourceVersion]:
        if spec.history_table is None:
            raise ValueError(f"{spec.table} keeps no history")
        current = self.get_resource(org, spec, key, include_deleted=True)
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT version, event, snapshot, changed_at, changed_by_id "
                f"FROM {_q(spec.history_table)} WHERE organization_id = ? AND resource_id = ? "
                "ORDER BY version",
                (org, _enc(spec, "id", key[0])),
            ).fetchall()
        resource_id: uuid.UUID = current.id  # type: ignore[attr-defined]
        out = [
            ResourceVersion(
                resource_id=resource_id,
                version=r[0],
                event=r[1],
                snapshot=json.loads(r[2]),
                changed_at=from_micros(r[3]),
                changed_by_id=r[4],
            )
            for r in rows
        ]
        snapshot = current.model_dump(mode="json")
        out.append(
            ResourceVersion(
                resource_id=resource_id,
                version=snapshot.get("version", len(out) + 1),
                event="current",
                snapshot=snapshot,
                changed_at=snapshot.get("updated_at") or snapshot["created_at"],
                changed_by_id=snapshot.get("last_updated_by_id"),
            )
        )
        return out


class _Renamed:
    """A write transaction whose unique-key Conflicts name the resource."""

    def __init__(self, inner: AbstractContextManager[sqlite3.Connection], spec: ResourceSpec[Any]):
        self._inner = inner
        self._spec = spec

    def __enter__(self) -> sqlite3.Connection:
        return self._inner.__enter__()

    def __exit__(self, *exc: Any) -> bool | None:
        try:
            return self._inner.__exit__(*exc)
        except Conflict as err:
            if "version" in err.details:
                raise
            raise Conflict(
                f"a {self._spec.name} with the same unique values already exists",
                details=err.details,
            ) from err
