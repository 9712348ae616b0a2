"""The retry and log stages: one worker per channel drains that channel's outbox queue.

Each channel has its own queue, its own worker, its own concurrency limit and its own circuit
breaker, so a channel that is down (or slow) never delays another. An attempt that fails is
rescheduled *in the outbox* with exponential backoff and jitter (so a crash between attempts
loses nothing); the last failed attempt, or an answer that says retrying cannot help (a 4xx),
moves the notification to the dead letters. Every outcome is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import datetime, timezone

from pydantic import ValidationError

from alerting import metrics
from alerting.breaker import CircuitBreaker
from alerting.channels.base import Channel, DeliveryError
from alerting.notification import Notification
from alerting.outbox import Outbox, OutboxEntry
from skysentry.logs import kv

log = logging.getLogger(__name__)


def backoff_delay(attempts: int, initial: float, maximum: float, jitter: float,
                  retry_after: float | None = None, rng: random.Random | None = None) -> float:
    """Wait before attempt ``attempts + 1``: ``initial * 2**(attempts-1)``, capped, ± jitter;
    never shorter than the receiver's own ``Retry-After``."""
    base = min(maximum, initial * (2 ** max(0, attempts - 1)))
    r = (rng or random).uniform(-jitter, jitter)
    delay = base * (1.0 + r)
    if retry_after is not None:
        delay = max(delay, min(retry_after, maximum))
    return max(0.0, delay)


class ChannelWorker:
    def __init__(self, channel: Channel, outbox: Outbox, *, lease_s: float, poll_s: float):
        self.channel = channel
        self.outbox = outbox
        self.lease_ms = int(lease_s * 1000)
        self.poll_s = poll_s
        cfg = channel.config
        self.breaker = CircuitBreaker(cfg.breaker_failures, cfg.breaker_reset, probe_s=cfg.breaker_probe,
                                      name=channel.name)
        self._wakeup = asyncio.Event()
        self._inflight: dict[asyncio.Task, OutboxEntry] = {}

    @property
    def name(self) -> str:
        return self.channel.name

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self, stop: asyncio.Event, grace_s: float = 10.0) -> None:
        cfg = self.channel.config
        while not stop.is_set():
            claimed = 0
            try:
                free = cfg.concurrency - len(self._inflight)
                state = self.breaker.state
                metrics.BREAKER_OPEN.labels(self.name).set(1 if state == "open" else 0)
                if state == "half-open":
                    free = min(free, 1 if not self._inflight else 0)
                if free > 0 and state != "open":
                    self._wakeup.clear()
                    _, entries = await self.outbox.claim(self.name, free, self.lease_ms)
                    claimed = len(entries)
                    for entry in entries:
                        task = asyncio.create_task(self._deliver(entry), name=f"deliver:{self.name}:{entry.id}")
                        self._inflight[task] = entry
                        task.add_done_callback(self._inflight.pop)
            except Exception:  # Redis away: keep the worker alive and try again
                log.exception("outbox claim failed for channel %s; retrying", self.name)
                await _sleep_or_stop(stop, 1.0)
                continue
            if claimed and claimed == free:
                continue  # there may be more due right now
            timeout = self.poll_s if self.breaker.state != "open" else min(self.breaker.retry_in(), 1.0)
            await self._wait(stop, timeout)
        await self._drain(grace_s)

    async def _wait(self, stop: asyncio.Event, timeout: float) -> None:
        waiters = [asyncio.ensure_future(self._wakeup.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait([*waiters, *self._inflight], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def _drain(self, grace_s: float) -> None:
        """On shutdown: let sends in flight finish, then give back what is left."""
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=grace_s)
        for task, entry in list(self._inflight.items()):
            task.cancel()
            try:
                await self.outbox.release(entry)
            except Exception:  # the lease runs out by itself
                pass

    async def _deliver(self, entry: OutboxEntry) -> None:
        try:
            await self._attempt(entry)
        except asyncio.CancelledError:
            raise
        except Exception:  # Redis failed under us: the lease brings the entry back
            log.exception("delivery bookkeeping failed for %s on %s; the entry returns when its lease ends",
                          entry.id, self.name)

    async def _attempt(self, entry: OutboxEntry) -> None:
        cfg = self.channel.config
        try:
            n = Notification.model_validate_json(entry.payload)
        except ValidationError as exc:
            await self.outbox.dead_letter(entry, entry.attempts, f"unreadable outbox payload: {exc.errors()[0]['msg']}")
            metrics.FAILED.labels(self.name).inc()
            return
        fields = dict(channel=self.name, key=n.idempotency_key, fingerprint=n.alert.fingerprint, event=n.event,
                      target=n.target, attempt=entry.attempts + 1)
        started = time.monotonic()
        retry_after: float | None = None
        try:
            await asyncio.wait_for(self.channel.send(n), timeout=cfg.timeout + 1.0)
        except DeliveryError as exc:
            error, retryable, retry_after = self.channel.scrub(str(exc)), exc.retryable, exc.retry_after
        except asyncio.TimeoutError:
            error, retryable = f"{self.name}: no answer within {cfg.timeout:g} s", True
        except Exception as exc:  # a bug or an unexpected library error: retry, but say what
            error, retryable = f"{self.name}: {type(exc).__name__}: {self.channel.scrub(str(exc))[:300]}", True
        else:
            self.breaker.success()
            await self.outbox.ack(entry)
            now = datetime.now(timezone.utc)
            metrics.SENT.labels(self.name).inc()
            metrics.DELIVERY_LATENCY.labels(self.name).observe(max(0.0, (now - n.decided_at).total_seconds()))
            if n.event == "firing":
                metrics.DETECTION_TO_DELIVERY.labels(self.name).observe(
                    max(0.0, (now - n.alert.last_seen_at).total_seconds()))
            log.info("notification delivered", extra=kv(**fields, ms=round((time.monotonic() - started) * 1000, 1)))
            return

        self.breaker.failure()
        attempts = entry.attempts + 1
        if not retryable or attempts >= cfg.max_attempts:
            await self.outbox.dead_letter(entry, attempts, error)
            metrics.FAILED.labels(self.name).inc()
            why = "not retryable" if not retryable else f"after {attempts} attempts"
            log.error("notification dead-lettered (%s): %s", why, error, extra=kv(**fields))
            return
        delay = backoff_delay(attempts, cfg.backoff_initial, cfg.backoff_max, cfg.backoff_jitter, retry_after)
        if await self.outbox.retry_later(entry, delay, count_attempt=True, error=error):
            metrics.RETRIED.labels(self.name).inc()
            log.warning("notification failed, retry in %.2f s: %s", delay, error, extra=kv(**fields))


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass
