"""API key change notices: one ``LISTEN engramdb_api_keys`` connection per store, in a thread.

Migration 0006's triggers announce every change of a key, or deletion of its organization, on
commit, whoever makes it. Subscribers (the server's key cache) hear them here; changes made
through this store are also passed on directly, before the call that made them returns, so
this process never waits on its own notices.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from psycopg.conninfo import make_conninfo

__all__ = ["CHANNEL", "KeyChangeListener", "Subscription"]

log = logging.getLogger(__name__)

#: The channel migration 0006's triggers notify.
CHANNEL = "engramdb_api_keys"
#: How long one wait for notices lasts: the longest a closing listener takes to notice.
_POLL_S = 0.2
_RECONNECT_S = (0.5, 10.0)  # first and longest pause between attempts
#: TCP keepalives, so that a connection lost without a word (a dead host, a dropped route) is
#: noticed within seconds rather than hours; libpq ignores them on Unix sockets, which do not
#: fail silently. The key cache's entry lifetime bounds whatever is left.
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}


class KeyChangeListener:
    """Listens while it has subscribers; ``alive`` only while the LISTEN connection is up.

    Whenever listening starts or stops, subscribers are told that anything may have changed
    (``None``): notices sent while nobody listened are lost.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._subscribers: list[Callable[[str | None], None]] = []
        self._lock = threading.Lock()
        self._alive = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self._alive.is_set()

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def subscribe(self, on_change: Callable[[str | None], None]) -> None:
        with self._lock:
            self._subscribers.append(on_change)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="engramdb-key-changes", daemon=True
                )
                self._thread.start()

    def unsubscribe(self, on_change: Callable[[str | None], None]) -> None:
        with self._lock:
            if on_change in self._subscribers:
                self._subscribers.remove(on_change)
            last = not self._subscribers
        if last:
            self.close()

    def changed(self, payload: str | None) -> None:
        """Tell every subscriber (also called for this process's own changes)."""
        with self._lock:
            subscribers = list(self._subscribers)
        for on_change in subscribers:
            try:
                on_change(payload)
            except Exception:  # one subscriber's failure must not starve the others
                log.exception("an API key change subscriber failed")

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2 * _POLL_S + 1)

    def _run(self) -> None:
        pause = _RECONNECT_S[0]
        conninfo = make_conninfo(self._url, **_KEEPALIVES)
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._alive.set()
                    self.changed(None)
                    pause = _RECONNECT_S[0]
                    while not self._stop.is_set():
                        for notice in conn.notifies(timeout=_POLL_S):
                            self.changed(notice.payload)
            except psycopg.Error as exc:
                if not self._stop.is_set():
                    log.warning("not hearing API key changes (%s); retrying in %.1fs", exc, pause)
            finally:
                if self._alive.is_set():
                    self._alive.clear()
                    self.changed(None)
            if self._stop.wait(pause):
                break
            pause = min(pause * 2, _RECONNECT_S[1])


class Subscription:
    """One subscriber's handle (the store's ``KeyWatch``)."""

    def __init__(self, listener: KeyChangeListener, on_change: Callable[[str | None], None]):
        self._listener = listener
        self._on_change = on_change

    @property
    def alive(self) -> bool:
        return self._listener.alive

    def close(self) -> None:
        self._listener.unsubscribe(self._on_change)
