"""Counts memory accesses off the read path and writes them in batches."""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Iterable

from ..errors import EngramError
from ..models import utcnow
from ..store.base import Store

__all__ = ["AccessRecorder"]

log = logging.getLogger(__name__)


class AccessRecorder:
    """Collects (organization, memory id) hits; a daemon thread flushes them every ``interval``.

    Reads only touch an in-memory counter, so recording an access never costs a round trip.
    """

    def __init__(self, store: Store, interval: float = 1.0, max_pending: int = 5000) -> None:
        self._store = store
        self._interval = interval
        self._max_pending = max_pending
        self._pending: dict[str, Counter[uuid.UUID]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, org: str, ids: Iterable[uuid.UUID]) -> None:
        with self._lock:
            counter = self._pending.setdefault(org, Counter())
            counter.update(ids)
            size = sum(len(c) for c in self._pending.values())
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="engramdb-access", daemon=True
                )
                self._thread.start()
        if size >= self._max_pending:
            self._wake.set()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        at = utcnow()
        for org, counter in pending.items():
            try:
                self._store.record_access(org, dict(counter), at)
            except EngramError as exc:  # access counts are advisory; never fail a caller for them
                log.warning("could not record %d memory accesses: %s", len(counter), exc)

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
