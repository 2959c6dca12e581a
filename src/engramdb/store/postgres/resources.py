"""Generic resource operations on PostgreSQL: one implementation for every ResourceSpec."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from psycopg import sql
from psycopg.types.json import Jsonb

from ...errors import Conflict, NotFound
from ...models.blocks import ResourceVersion
from ..resources import R, ResourceSpec, Where
from .core import StoreCore

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresResources"]

_CMP = {"eq": "=", "ne": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


def _ident(*names: str) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _adapt(spec: ResourceSpec[Any], column: str, value: Any) -> Any:
    if column in spec.json_columns:
        return Jsonb(value)
    return value


def _row_model(spec: ResourceSpec[R], row: Mapping[str, Any]) -> R:
    return spec.model.model_validate({c: row[c] for c in spec.columns})


def _not_found(spec: ResourceSpec[Any], key: Sequence[Any]) -> NotFound:
    shown = ", ".join(str(k) for k in key)
    return NotFound(
        f"{spec.name} {shown} not found",
        details={"resource": spec.name, "key": [str(k) for k in key]},
    )


def _key_cond(spec: ResourceSpec[Any], key: Sequence[Any], params: list[Any]) -> sql.Composable:
    if len(key) != len(spec.key):
        raise ValueError(f"{spec.table} is keyed by {spec.key}")
    params.extend(key)
    return sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in spec.key)


def _where(spec: ResourceSpec[Any], where: Sequence[Where], params: list[Any]) -> sql.Composable:
    parts: list[sql.Composable] = []
    for w in where:
        spec.check_columns(w.columns)
        alts: list[sql.Composable] = []
        for column in w.columns:
            col = sql.Identifier(column)
            if w.op == "null" or (w.op == "eq" and w.value is None):
                alts.append(sql.SQL("{} IS NULL").format(col))
            elif w.op == "not_null":
                alts.append(sql.SQL("{} IS NOT NULL").format(col))
            elif w.op == "in":
                params.append(list(w.value))
                alts.append(sql.SQL("{} = ANY(%s)").format(col))
            elif w.op == "ne":
                params.append(w.value)
                alts.append(sql.SQL("{} IS DISTINCT FROM %s").format(col))
            else:
                params.append(w.value)
                alts.append(sql.SQL("{} {} %s").format(col, sql.SQL(_CMP[w.op])))
        parts.append(sql.SQL("({})").format(sql.SQL(" OR ").join(alts)))
    return sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")


class PostgresResources(StoreCore):
    """Mixed into :class:`PostgresStore`; relies on its ``_tx`` (transaction with tenant set)."""

    @contextmanager
    def _rtx(self, org: str, spec: ResourceSpec[Any]) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        try:
            with self._tx(org) as cur:
                yield cur
        except Conflict as exc:
            raise Conflict(
                f"a {spec.name} with the same unique values already exists", details=exc.details
            ) from exc

    @staticmethod
    def _register(
        cur: psycopg.Cursor[dict[str, Any]],
        org: str,
        spec: ResourceSpec[Any],
        rows: Sequence[Mapping[str, Any]],
    ) -> None:
        for column, table in spec.registers.items():
            ids = sorted({r[column] for r in rows if r.get(column) is not None})
            if ids:
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} (organization_id, id) SELECT %s, unnest(%s::text[]) "
                        "ON CONFLICT DO NOTHING"
                    ).format(sql.Identifier(table)),
                    (org, ids),
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
        prepared: list[dict[str, Any]] = []
        for row in rows:
            values = {k: v for k, v in row.items() if k != "organization_id"}
            self._audit(spec, values, actor)
            prepared.append(values)
        columns = sorted({c for r in prepared for c in r})
        spec.check_columns(columns)
        params: list[Any] = []
        tuples: list[sql.Composable] = []
        for r in prepared:
            cells: list[sql.Composable] = [sql.Placeholder()]
            params.append(org)
            for c in columns:
                if c in r:
                    cells.append(sql.Placeholder())
                    params.append(_adapt(spec, c, r[c]))
                else:
                    cells.append(sql.SQL("DEFAULT"))
            tuples.append(sql.SQL("({})").format(sql.SQL(", ").join(cells)))
        with self._rtx(org, spec) as cur:
            self._register(cur, org, spec, prepared)
            cur.execute(
                sql.SQL("INSERT INTO {} (organization_id, {}) VALUES {} RETURNING {}").format(
                    sql.Identifier(spec.table),
                    _ident(*columns),
                    sql.SQL(", ").join(tuples),
                    _ident(*spec.columns),
                ),
                params,
            )
            out = [_row_model(spec, r) for r in cur.fetchall()]
        # RETURNING follows the VALUES order in practice; match by key where the caller gave it.
        if all(all(k in r for k in spec.key) for r in prepared):
            by_key = {tuple(str(getattr(m, k)) for k in spec.key): m for m in out}
            return [by_key[tuple(str(r[k]) for k in spec.key)] for r in prepared]
        return out

    def get_resource(
        self,
        org: str,
        spec: ResourceSpec[R],
        key: Sequence[Any],
        *,
        include_deleted: bool = False,
    ) -> R:
        params: list[Any] = [org]
        cond = _key_cond(spec, key, params)
        with self._tx(org) as cur:
            cur.execute(
                sql.SQL("SELECT {} FROM {} WHERE organization_id = %s AND {}").format(
                    _ident(*spec.columns), sql.Identifier(spec.table), cond
                ),
                params,
            )
            row = cur.fetchone()
        if row is None or (
            spec.soft_delete and row.get("deleted_at") is not None and not include_deleted
        ):
            raise _not_found(spec, key)
        return _row_model(spec, row)

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
        cond = _where(spec, where, params)
        live = (
            sql.SQL(" AND deleted_at IS NULL")
            if spec.soft_delete and not include_deleted
            else sql.SQL("")
        )
        order = sql.SQL(" DESC" if descending else "")
        keyset: sql.Composable = sql.SQL("")
        if after is not None:
            keyset = sql.SQL(" AND ({}) {} ({})").format(
                _ident(*spec.key),
                sql.SQL("<" if descending else ">"),
                sql.SQL(", ").join(sql.Placeholder() * len(spec.key)),
            )
            params.extend(after)
        params.append(limit)
        with self._tx(org) as cur:
            cur.execute(
                sql.SQL(
                    "SELECT {cols} FROM {t} WHERE organization_id = %s AND {cond}{live}{keyset} "
                    "ORDER BY {order} LIMIT %s"
                ).format(
                    cols=_ident(*spec.columns),
                    t=sql.Identifier(spec.table),
                    cond=cond,
                    live=live,
                    keyset=keyset,
                    order=sql.SQL(", ").join(
                        sql.SQL("{}{}").format(sql.Identifier(k), order) for k in spec.key
                    ),
                ),
                params,
            )
            return [_row_model(spec, r) for r in cur.fetchall()]

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
        sets: list[sql.Composable] = []
        set_params: list[Any] = []
        for name, value in changes.items():
            sets.append(sql.SQL("{} = %s").format(sql.Identifier(name)))
            set_params.append(_adapt(spec, name, value))
        if spec.versioned:
            sets.append(sql.SQL("version = t.version + 1"))
        if "updated_at" in cols:
            sets.append(sql.SQL("updated_at = now()"))
        if "last_updated_by_id" in cols:
            sets.append(sql.SQL("last_updated_by_id = %s"))
            set_params.append(actor)
        if not sets:
            return self.get_resource(org, spec, key)
        old_params: list[Any] = [org]
        cond = _key_cond(spec, key, old_params)
        if spec.soft_delete and not include_deleted:
            cond = sql.SQL("{} AND deleted_at IS NULL").format(cond)
        if expect_version is not None:
            cond = sql.SQL("{} AND version = %s").format(cond)
            old_params.append(expect_version)
        match = sql.SQL(" AND ").join(
            sql.SQL("t.{0} = old.{0}").format(sql.Identifier(k)) for k in spec.key
        )
        hist: sql.Composable = sql.SQL("")
        hist_params: list[Any] = []
        if spec.history_table is not None:
            hist = sql.SQL(
                ", hist AS (INSERT INTO {} (organization_id, id, resource_id, version, event, "
                "snapshot, changed_by_id) SELECT organization_id, %s, id, version, %s, "
                "to_jsonb(old), %s FROM old)"
            ).format(sql.Identifier(spec.history_table))
            hist_params = [uuid.uuid4(), event, actor]
        query = sql.SQL(
            "WITH old AS (SELECT * FROM {t} WHERE organization_id = %s AND {cond} FOR UPDATE)"
            "{hist} UPDATE {t} AS t SET {sets} FROM old "
            "WHERE t.organization_id = old.organization_id AND {match} RETURNING {cols}"
        ).format(
            t=sql.Identifier(spec.table),
            cond=cond,
            hist=hist,
            sets=sql.SQL(", ").join(sets),
            match=match,
            cols=sql.SQL(", ").join(
                sql.SQL("t.{}").format(sql.Identifier(c)) for c in spec.columns
            ),
        )
        with self._rtx(org, spec) as cur:
            cur.execute(query, [*old_params, *hist_params, *set_params])
            row = cur.fetchone()
        if row is not None:
            return _row_model(spec, row)
        if expect_version is not None:
            current = self.get_resource(org, spec, key, include_deleted=include_deleted)
            version = getattr(current, "version", None)
            raise Conflict(
                f"{spec.name} {key[0]} changed meanwhile (version {version}, expected "
                f"{expect_version}); read it again and retry",
                details={"version": version, "expected": expect_version},
            )
        raise _not_found(spec, key)

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
            self.update_resource(
                org, spec, key, {"deleted_at": _now()}, actor=actor, event="delete"
            )
            return
        params: list[Any] = [org]
        cond = _key_cond(spec, key, params)
        with self._tx(org) as cur:
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE organization_id = %s AND {} RETURNING 1").format(
                    sql.Identifier(spec.table), cond
                ),
                params,
            )
            if cur.fetchone() is None:
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
            params.append(actor)
            head = sql.SQL(
                "UPDATE {} SET deleted_at = now(), updated_at = now(), last_updated_by_id = %s "
            ).format(sql.Identifier(spec.table))
            tail = sql.SQL(" AND deleted_at IS NULL")
        else:
            head = sql.SQL("DELETE FROM {} ").format(sql.Identifier(spec.table))
            tail = sql.SQL("")
        params.append(org)
        cond = _where(spec, where, params)
        with self._tx(org) as cur:
            cur.execute(
                sql.SQL("{}WHERE organization_id = %s AND {}{}").format(head, cond, tail), params
            )
            return int(cur.rowcount)

    def upsert_resource(
        self, org: str, spec: ResourceSpec[R], values: Mapping[str, Any], *, actor: str | None
    ) -> R:
        data = {k: v for k, v in values.items() if k != "organization_id"}
        spec.check_columns(data)
        cols = set(spec.columns)
        insert = dict(data)
        self._audit(spec, insert, actor)
        columns = list(insert)
        updates: list[sql.Composable] = [
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
            for c in data
            if c not in spec.key
        ]
        if "deleted_at" in cols:
            updates.append(sql.SQL("deleted_at = NULL"))
        if "updated_at" in cols:
            updates.append(sql.SQL("updated_at = now()"))
        if "last_updated_by_id" in cols:
            updates.append(sql.SQL("last_updated_by_id = EXCLUDED.last_updated_by_id"))
        if spec.versioned:
            updates.append(sql.SQL("version = t.version + 1"))
        action = (
            sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(updates))
            if updates
            else sql.SQL("DO UPDATE SET organization_id = EXCLUDED.organization_id")
        )
        with self._rtx(org, spec) as cur:
            self._register(cur, org, spec, [data])
            cur.execute(
                sql.SQL(
                    "INSERT INTO {t} AS t (organization_id, {cols}) VALUES (%s, {ph}) "
                    "ON CONFLICT (organization_id, {key}) {action} RETURNING {ret}"
                ).format(
                    t=sql.Identifier(spec.table),
                    cols=_ident(*columns),
                    ph=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
                    key=_ident(*spec.key),
                    action=action,
                    ret=_ident(*spec.columns),
                ),
                [org, *(_adapt(spec, c, insert[c]) for c in columns)],
            )
            row = cur.fetchone()
        assert row is not None
        return _row_model(spec, row)

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
        live = sql.SQL(" AND deleted_at IS NULL") if spec.soft_delete else sql.SQL("")
        groups = _ident(*group_by) if group_by else sql.SQL("")
        select = sql.SQL("{}, ").format(groups) if group_by else sql.SQL("")
        group = sql.SQL(" GROUP BY {}").format(groups) if group_by else sql.SQL("")
        with self._tx(org) as cur:
            cur.execute(
                sql.SQL(
                    "SELECT {select}count(*) AS n FROM {t} WHERE organization_id = %s "
                    "AND {cond}{live}{group}"
                ).format(
                    select=select, t=sql.Identifier(spec.table), cond=cond, live=live, group=group
                ),
                params,
            )
            return [(tuple(r[g] for g in group_by), int(r["n"])) for r in cur.fetchall()]

    def resource_history(
        self, org: str, spec: ResourceSpec[R], key: Sequence[Any]
    ) -> list[ResourceVersion]:
        if spec.history_table is None:
            raise ValueError(f"{spec.table} keeps no history")
        current = self.get_resource(org, spec, key, include_deleted=True)
        with self._tx(org) as cur:
            cur.execute(
                sql.SQL(
                    "SELECT resource_id, version, event, snapshot, changed_at, changed_by_id "
                    "FROM {} WHERE organization_id = %s AND resource_id = %s ORDER BY version"
                ).format(sql.Identifier(spec.history_table)),
                (org, key[0]),
            )
            rows = cur.fetchall()
        out = [ResourceVersion.model_validate(r) for r in rows]
        snapshot = current.model_dump(mode="json")
        out.append(
            ResourceVersion(
                resource_id=key[0],
                version=snapshot.get("version", len(out) + 1),
                event="current",
                snapshot=snapshot,
                changed_at=snapshot.get("updated_at") or snapshot["created_at"],
                changed_by_id=snapshot.get("last_updated_by_id"),
            )
        )
        return out


def _now() -> Any:
    from ...models import utcnow

    return utcnow()
