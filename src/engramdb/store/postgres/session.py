"""What each pooled connection's session has set: the tenant and the search knobs.

A statement needs the tenant for row-level security and, for a vector search, a few planner
and pgvector settings. Sending them as transaction-local settings with every statement cost one
more statement per round trip, and turned a search's single statement into a pipeline: about
0.06 to 0.15 ms of a 1 to 2 ms search on the benchmark machine. Instead they are session settings,
sent only when they change: the store tracks, per connection, the values it has set.

Every statement states the whole of what it needs (``wanted``); a tracked setting it does not
name is put back to the connection's baseline, so no statement inherits another's knobs. The
tenant is always named (``""`` when there is none: no row matches it, as with no setting at
all), so a connection never carries one tenant's setting into another's statement. A value is
recorded only once the transaction that set it has committed; after any error the connection's
state is unknown and everything is sent again (a failed transaction also undoes its settings).
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from psycopg import sql

from ...migrations.rls import ORG_SETTING

__all__ = ["ORG_SETTING", "TRACKED", "Sessions", "pairs", "set_config_sql", "split_settings"]

#: Settings kept at session level, sent when they change. Any other setting a statement needs
#: (``synchronous_commit``, ``statement_timeout``) stays transaction-local.
TRACKED = (ORG_SETTING, "hnsw.ef_search", "enable_sort", "plan_cache_mode")


class _State:
    __slots__ = ("baseline", "current")

    def __init__(self, baseline: dict[str, str]) -> None:
        self.baseline = baseline
        self.current: dict[str, str] = dict(baseline)


class Sessions:
    """The tracked settings of each connection, keyed weakly (a closed connection drops out)."""

    def __init__(self) -> None:
        self._states: weakref.WeakKeyDictionary[Any, _State] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def configured(self, conn: Any, baseline: Mapping[str, str]) -> None:
        """``conn`` was just configured with ``baseline`` (a value for every tracked setting)."""
        missing = set(TRACKED) - set(baseline)
        if missing:
            raise ValueError(f"no baseline for {sorted(missing)}")
        with self._lock:
            self._states[conn] = _State({k: str(baseline[k]) for k in TRACKED})

    def changes(self, conn: Any, wanted: Mapping[str, str]) -> dict[str, str]:
        """The session settings to send before a statement needing ``wanted`` (tracked names
        only; the tenant must be among them) runs on ``conn``."""
        if ORG_SETTING not in wanted:
            raise ValueError('a statement names its tenant ("" for none)')
        state = self._states.get(conn)
        if state is None:
            # Not a connection this store configured (no baseline known): send what is wanted.
            return {k: v for k, v in wanted.items() if k in TRACKED}
        out: dict[str, str] = {}
        for name in TRACKED:
            value = wanted.get(name, state.baseline[name])
            if state.current.get(name) != value:
                out[name] = value
        return out

    def committed(self, conn: Any, sent: Mapping[str, str]) -> None:
        """``sent`` was set on ``conn`` and its transaction committed."""
        if not sent:
            return
        state = self._states.get(conn)
        if state is not None:
            state.current.update(sent)

    def forget(self, conn: Any) -> None:
        """Something failed on ``conn``: its settings are unknown until all are sent again."""
        state = self._states.get(conn)
        if state is not None:
            state.current = {}


def split_settings(
    org: str | None, local: Mapping[str, str] | None
) -> tuple[dict[str, str], dict[str, str]]:
    """A statement's settings as (tracked ones, the tenant always among them; transaction-local
    ones): what ``Sessions.changes`` is asked for, and what is sent with the statement anyway."""
    wanted = {ORG_SETTING: org or ""}
    txlocal: dict[str, str] = {}
    for name, value in (local or {}).items():
        (wanted if name in TRACKED else txlocal)[name] = value
    return wanted, txlocal


@functools.cache
def set_config_sql(session: int, local: int) -> sql.SQL:
    """``SELECT set_config(…)`` for ``session`` session-level then ``local`` transaction-local
    settings (their names and values as parameters, in that order); rendered once per shape."""
    calls = [sql.SQL("set_config(%s, %s, false)")] * session
    calls += [sql.SQL("set_config(%s, %s, true)")] * local
    return sql.SQL(sql.SQL("SELECT {}").format(sql.SQL(", ").join(calls)).as_string())


def pairs(*settings: Mapping[str, str]) -> list[str]:
    """The names and values of ``settings``, flat, as set_config_sql's parameters."""
    return [x for group in settings for kv in group.items() for x in kv]
