"""The state of one live source (a camera or a microphone) as the operator sees it.

- ``live``: new frames or samples are flowing;
- ``stale``: the source is connected but delivers nothing new (a stalled read, frozen frames,
  audio callbacks that stopped) — the same word the alerting uses for a source whose
  processor went silent, and for the same reason: no news is not "no drone";
- ``down``: the source is lost (refused, not found, unauthorised, device gone) and is being
  reopened.

Each change is one log line with its cause, never one per retry; the current state is the
gauge ``skysentry_source_state{kind, source, state}`` (1 for the current state, 0 for the
others) on the producer's ``/metrics``, and a live source is a readiness condition of the
producer's ``/readyz`` (:data:`skysentry.metrics.HEALTH`): ready only while it is live.
"""

from __future__ import annotations

import logging
import threading
import time
from enum import StrEnum

from prometheus_client import Counter, Gauge

from skysentry.logs import kv
from skysentry.metrics import HEALTH

log = logging.getLogger(__name__)


class SourceState(StrEnum):
    LIVE = "live"
    STALE = "stale"
    DOWN = "down"


SOURCE_STATE = Gauge("skysentry_source_state", "1 for a live source's current state (live, stale, down), 0 for the "
                     "others", ["kind", "source", "state"])
SOURCE_CHANGES = Counter("skysentry_source_state_changes_total", "Times a live source entered a state",
                         ["kind", "source", "state"])


class SourceHealth:
    """Tracks one source's state; safe to call from a capture thread and the event loop."""

    def __init__(self, kind: str, source_id: str) -> None:
        self.kind, self.source_id = kind, source_id
        self.state: SourceState | None = None
        self.cause = ""
        self.since = time.monotonic()
        self._lock = threading.Lock()

    @property
    def condition(self) -> str:
        return f"source {self.kind} {self.source_id}"

    def watch(self) -> None:
        """Make this (live) source a readiness condition, unmet until it is live."""
        HEALTH.require(self.condition)

    def set(self, state: SourceState, cause: str = "") -> bool:
        """Enter ``state`` (``cause`` says why, in words); log and count only a change of state
        or of cause. Returns whether anything changed."""
        with self._lock:
            if state == self.state and cause == self.cause:
                return False
            previous, held = self.state, time.monotonic() - self.since
            if state != previous:
                self.since = time.monotonic()
                SOURCE_CHANGES.labels(self.kind, self.source_id, state.value).inc()
                for s in SourceState:
                    SOURCE_STATE.labels(self.kind, self.source_id, s.value).set(1 if s == state else 0)
            self.state, self.cause = state, cause
        HEALTH.set(self.condition, state == SourceState.LIVE, state.value + (f": {cause}" if cause else ""))
        extra = kv(source=self.source_id, state=state.value, cause=cause)
        if state == SourceState.LIVE:
            if previous not in (None, SourceState.LIVE):
                log.info("%s %s live again after %.1f s %s", self.kind, self.source_id, held, previous.value, extra=extra)
            return True
        log.warning("%s %s %s: %s", self.kind, self.source_id, state.value, cause, extra=extra)
        return True

    @property
    def is_live(self) -> bool:
        return self.state == SourceState.LIVE
