"""A per-channel circuit breaker: after ``failures`` consecutive failures the channel is left
alone (its notifications wait in the outbox without spending attempts) for a short back-off,
``probe_s``; then it is half-open: one probe send decides. A probe that fails opens it again
for twice as long, up to ``reset_s``; one that succeeds closes it. So a receiver that is back
is found within about the back-off reached, not after a fixed long wait, and a receiver that
stays down costs one request per ``reset_s``. Every change of state is logged."""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


class CircuitBreaker:
    def __init__(self, failures: int, reset_s: float, clock=time.monotonic, *, probe_s: float = 1.0,
                 name: str = ""):
        self.failures = failures
        self.reset_s = reset_s
        self.probe_s = min(probe_s, reset_s)
        self.name = name
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._open_for = self.probe_s
        self._trial_in_flight = False
        self._told = "closed"  # the state last logged

    @property
    def state(self) -> str:
        if self._opened_at is None:
            now = "closed"
        else:
            now = "half-open" if self._clock() - self._opened_at >= self._open_for else "open"
        if now == "half-open" and self._told == "open":
            self._tell("half-open", "letting one probe through")
        return now

    def _tell(self, state: str, why: str) -> None:
        self._told = state
        log.warning("circuit breaker of channel %s %s: %s", self.name, state, why,
                    extra={"fields": {"channel": self.name, "breaker": state}})

    def allow(self) -> bool:
        """May a send start now? In half-open state, only one trial at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def retry_in(self) -> float:
        """Seconds until the breaker lets a trial through (0 when closed)."""
        if self._opened_at is None:
            return 0.0
        return max(0.05, self._open_for - (self._clock() - self._opened_at))

    def success(self) -> None:
        if self._opened_at is not None:
            self._tell("closed", "a send succeeded")
        self._consecutive = 0
        self._opened_at = None
        self._open_for = self.probe_s
        self._trial_in_flight = False

    def failure(self) -> None:
        self._consecutive += 1
        state = self.state
        if state == "half-open":  # the probe failed: wait longer before the next
            self._open_for = min(self.reset_s, self._open_for * 2)
            self._opened_at = self._clock()
            self._tell("open", f"the probe failed; next probe in {self._open_for:g} s")
        elif state == "closed" and self._consecutive >= self.failures:
            self._open_for = self.probe_s
            self._opened_at = self._clock()
            self._tell("open", f"{self._consecutive} consecutive failures; first probe in {self._open_for:g} s")
        self._trial_in_flight = False
