"""A per-channel circuit breaker: after ``failures`` consecutive failures the channel is left
alone for ``reset_s`` (its notifications wait in the outbox without spending attempts), then
one trial send decides whether it closes again."""

from __future__ import annotations

import time


class CircuitBreaker:
    def __init__(self, failures: int, reset_s: float, clock=time.monotonic):
        self.failures = failures
        self.reset_s = reset_s
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._clock() - self._opened_at >= self.reset_s else "open"

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
        return max(0.05, self.reset_s - (self._clock() - self._opened_at))

    def success(self) -> None:
        self._consecutive = 0
        self._opened_at = None
        self._trial_in_flight = False

    def failure(self) -> None:
        self._consecutive += 1
        if self._trial_in_flight or self._consecutive >= self.failures:
            self._opened_at = self._clock()
        self._trial_in_flight = False
