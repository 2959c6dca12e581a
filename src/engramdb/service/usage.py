"""Usage metering off the request path: events are queued and written in batches."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ..errors import EngramError, InvalidInput
from ..models import utcnow
from ..models.security import ApiKey, ApiKeyUses, UsageEvent, UsageTotal
from ..store.base import Store

__all__ = ["UsageRecorder", "usage_totals"]

log = logging.getLogger(__name__)

#: Per-minute rate-limit windows older than this are pruned while flushing.
_COUNTER_RETENTION = timedelta(minutes=5)
_PRUNE_EVERY_S = 300.0


class UsageRecorder:
    """Collects usage events; a daemon thread writes them every ``interval`` seconds (or sooner
    when ``max_pending`` pile up), so metering never adds a round trip to a request.

    It also counts the requests of keys the server remembers (keys without limits, see
    ``key_cache``) and adds them to the keys' windows with each flush.

    Events and counts still queued when the process dies are lost: usage is for reporting and
    billing estimates, and the counters that limits are enforced on (keys with limits) are
    counted in the database on every request.
    """

    def __init__(
        self,
        store: Store,
        interval: float = 1.0,
        max_pending: int = 2000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._interval = interval
        self._max_pending = max_pending
        self._clock = clock
        self._pending: list[UsageEvent] = []
        #: (organization, key id, minute) -> [requests, last request]
        self._uses: dict[tuple[str, uuid.UUID, datetime], list[Any]] = {}
        self._orgs_seen: set[str] = set()
        self._last_prune = clock()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def record(
        self,
        *,
        organization_id: str,
        endpoint: str,
        method: str,
        status_code: int,
        latency_ms: float,
        api_key_id: uuid.UUID | None = None,
        subject: str | None = None,
        tokens: int = 0,
        at: datetime | None = None,
    ) -> None:
        event = UsageEvent(
            id=uuid.uuid4(), organization_id=organization_id, api_key_id=api_key_id,
            subject=subject, endpoint=endpoint, method=method, status_code=status_code,
            latency_ms=latency_ms, tokens=tokens, created_at=at or utcnow(),
        )  # fmt: skip
        with self._lock:
            self._pending.append(event)
            size = len(self._pending)
            if self._thread is None and not self._stopped.is_set():
                self._start()
        if size >= self._max_pending:
            self._wake.set()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="engramdb-usage", daemon=True)
        self._thread.start()

    def count_key_use(self, key: ApiKey, at: datetime | None = None) -> None:
        """One request of a remembered key, added to its windows with the next flush."""
        at = at or utcnow()
        slot = (key.organization_id, key.id, at.replace(second=0, microsecond=0))
        with self._lock:
            seen = self._uses.get(slot)
            if seen is None:
                self._uses[slot] = [1, at]
            else:
                seen[0] += 1
                seen[1] = max(seen[1], at)
            if self._thread is None and not self._stopped.is_set():
                self._start()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> None:
        """Write everything queued now (tests, shutdown)."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, []
                uses, self._uses = self._uses, {}
            self._write_uses(uses)
            if batch:
                try:
                    self._store.insert_usage_events(batch)
                    self._orgs_seen.update(e.organization_id for e in batch)
                except EngramError as exc:  # metering must never take the API down
                    log.warning("could not write %d usage events: %s", len(batch), exc)
            if self._clock() - self._last_prune >= _PRUNE_EVERY_S:
                self._prune()

    def _write_uses(self, uses: dict[tuple[str, uuid.UUID, datetime], list[Any]]) -> None:
        by_org: dict[str, list[ApiKeyUses]] = {}
        for (org, key_id, minute), (count, last) in uses.items():
            by_org.setdefault(org, []).append(
                ApiKeyUses(key_id=key_id, minute=minute, count=count, last_used_at=last)
            )
        for org, batch in by_org.items():
            try:
                self._store.add_api_key_uses(org, batch)
                self._orgs_seen.add(org)
            except EngramError as exc:
                log.warning("could not count %d requests of keys in %s: %s",
                            sum(u.count for u in batch), org, exc)  # fmt: skip

    def _prune(self) -> None:
        self._last_prune = self._clock()
        before = utcnow() - _COUNTER_RETENTION
        orgs, self._orgs_seen = self._orgs_seen, set()
        for org in orgs:
            try:
                self._store.prune_api_key_counters(org, before)
            except EngramError as exc:
                log.warning("could not prune rate-limit windows of %s: %s", org, exc)

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


def usage_totals(
    store: Store,
    org: str,
    *,
    since: datetime | None = None,
    months: int | None = None,
    api_key_id: uuid.UUID | None = None,
    subject: str | None = None,
) -> list[UsageTotal]:
    """Per month and key totals of an organization (``months`` back from the current one),
    optionally of one key or one JWT subject."""
    if months is not None:
        if not 1 <= months <= 120:
            raise InvalidInput("months must be between 1 and 120")
        now = utcnow()
        year, month = now.year, now.month - (months - 1)
        while month < 1:
            month += 12
            year -= 1
        start = now.replace(year=year, month=month, day=1, hour=0, minute=0, second=0,
                            microsecond=0)  # fmt: skip
        since = start if since is None else max(since, start)
    return store.usage_totals(org, since=since, api_key_id=api_key_id, subject=subject)
