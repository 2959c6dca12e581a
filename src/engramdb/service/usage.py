"""Usage metering off the request path: events are queued and written in batches."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from ..errors import EngramError, InvalidInput
from ..models import utcnow
from ..models.security import UsageEvent, UsageTotal
from ..store.base import Store

__all__ = ["UsageRecorder", "usage_totals"]

log = logging.getLogger(__name__)

#: Per-minute rate-limit windows older than this are pruned while flushing.
_COUNTER_RETENTION = timedelta(minutes=5)
_PRUNE_EVERY_S = 300.0


class UsageRecorder:
    """Collects usage events; a daemon thread writes them every ``interval`` seconds (or sooner
    when ``max_pending`` pile up), so metering never adds a round trip to a request.

    Events still queued when the process dies are lost: usage is for reporting and billing
    estimates, and the authoritative rate-limit and quota counters live in the database.
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
                self._thread = threading.Thread(
                    target=self._run, name="engramdb-usage", daemon=True
                )
                self._thread.start()
        if size >= self._max_pending:
            self._wake.set()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> None:
        """Write everything queued now (tests, shutdown)."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if batch:
                try:
                    self._store.insert_usage_events(batch)
                    self._orgs_seen.update(e.organization_id for e in batch)
                except EngramError as exc:  # metering must never take the API down
                    log.warning("could not write %d usage events: %s", len(batch), exc)
            if self._clock() - self._last_prune >= _PRUNE_EVERY_S:
                self._prune()

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
