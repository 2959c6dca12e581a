"""Keys without limits, remembered by the server so that a request costs no round trip.

A key with a rate limit or a monthly quota is looked up and counted in PostgreSQL on every
request: the count must be exact and shared by every server process. A key without either has
nothing to count against, so once found it is remembered here, by its secret's hash, and its
requests are counted in memory and written in batches (``UsageRecorder``).

Remembering is only safe while every change to a key is heard: the store's watch
(``Store.watch_api_keys``) reports this process's changes at once and other processes' as the
database announces them (migration 0006). While the watch is not alive nothing is remembered
and nothing is served from memory. A lookup that started before a change was heard does not
enter what it found (the generation check), so a revoked key cannot slip back in.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from ..models import utcnow
from ..models.security import ApiKey
from ..store.base import Store
from ..store.security import KeyWatch

__all__ = ["KeyCache", "rememberable"]


def rememberable(key: ApiKey) -> bool:
    """A usable key with no limit to count against."""
    return (
        key.rate_limit is None
        and key.monthly_quota is None
        and key.enabled
        and key.revoked_at is None
        and (key.expires_at is None or key.expires_at > utcnow())
    )


class KeyCache:
    """Hash of a secret → its key, for keys without limits, while changes are heard.

    ``seconds`` bounds how long an entry lives even if a notice were missed without the watch
    noticing; ``size`` bounds memory (least recently used first out).
    """

    def __init__(
        self,
        store: Store,
        *,
        seconds: float = 60.0,
        size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seconds = seconds
        self._size = size
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, ApiKey]] = OrderedDict()
        self._generation = 0
        self._watch: KeyWatch | None = store.watch_api_keys(self.changed)

    @property
    def alive(self) -> bool:
        return self._watch is not None and self._watch.alive

    def generation(self) -> int | None:
        """Take before looking a key up; ``None``: what is found may not be remembered."""
        if not self.alive:
            return None
        with self._lock:
            return self._generation

    def get(self, key_hash: str) -> ApiKey | None:
        if not self.alive:
            return None
        with self._lock:
            hit = self._entries.get(key_hash)
            if hit is None:
                return None
            expires_at = hit[1].expires_at
            if hit[0] < self._clock() or (expires_at is not None and expires_at <= utcnow()):
                del self._entries[key_hash]  # an expiring key stops when it expires, not later
                return None
            self._entries.move_to_end(key_hash)
            return hit[1]

    def put(self, key_hash: str, key: ApiKey, generation: int) -> bool:
        """Remember ``key`` if nothing changed since ``generation`` was taken."""
        if not rememberable(key) or not self.alive:
            return False
        with self._lock:
            if generation != self._generation:
                return False
            self._entries[key_hash] = (self._clock() + self._seconds, key)
            self._entries.move_to_end(key_hash)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
            return True

    def changed(self, payload: str | None) -> None:
        """A key (its id), an organization (``org:<id>``) or anything (``None``) changed."""
        with self._lock:
            self._generation += 1
            if payload is None:
                self._entries.clear()
                return
            org = payload[4:] if payload.startswith("org:") else None
            gone = [
                h
                for h, (_, key) in self._entries.items()
                if (key.organization_id == org if org is not None else str(key.id) == payload)
            ]
            for h in gone:
                del self._entries[h]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        with self._lock:
            self._entries.clear()
