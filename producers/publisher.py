"""The publishing path of every sensor producer: a bounded local buffer in front of Kafka.

Sensors produce at their own pace whatever the broker does. While the broker is slow or
away, records wait in a bounded buffer (DESIGN §4):

* frames are perishable: when the buffer is full the *oldest* frame is dropped and counted,
  and a frame whose send fails is dropped and counted too (a late frame is worth little);
* audio windows are kept: a failed send goes back to the head of the buffer and is retried
  with backoff, so windows stay in order; only past ``capacity`` is the oldest dropped.

The Kafka producer itself is idempotent with ``acks=all`` (:func:`skysentry.bus.make_producer`).
The publisher owns it: when batches expired during a long outage, aiokafka's idempotent
producer is left with sequence numbers the broker rejects forever (``OutOfOrderSequenceNumber``)
because it never bumps its producer id, so on such an error the publisher replaces the producer
with a fresh one (new producer id, sequences from zero) and carries on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import InvalidProducerEpoch, OutOfOrderSequenceNumber, UnknownProducerId
from prometheus_client import Counter, Gauge

from skysentry.messages import Headers

log = logging.getLogger(__name__)

PUBLISHED = Counter("skysentry_producer_published_total", "Records acknowledged by Kafka", ["topic"])
DROPPED = Counter("skysentry_producer_dropped_total", "Records dropped before Kafka acknowledged them",
                  ["topic", "reason"])
RENEWED = Counter("skysentry_producer_renewed_total",
                  "Kafka producers replaced after their idempotence state broke", ["topic"])
RETRIED = Counter("skysentry_producer_retried_total", "Sends retried after a failure", ["topic"])
BUFFERED = Gauge("skysentry_producer_buffered", "Records waiting in the local buffer", ["topic"])


# The broker refuses this producer id's sequence: only a new producer id recovers.
BROKEN_PRODUCER = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch)


@dataclass(slots=True)
class Record:
    key: bytes
    value: bytes
    headers: Headers


@dataclass
class PublisherStats:
    offered: int = 0
    published: int = 0
    dropped_full: int = 0
    dropped_failed: int = 0
    retried: int = 0
    renewed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def dropped(self) -> int:
        return self.dropped_full + self.dropped_failed


class BufferedPublisher:
    """``start()``, feed ``offer()`` from the sensor side, ``run()`` drains to Kafka until
    ``close()``, then ``stop()``. ``make_producer`` builds a (not started) Kafka producer.

    ``retry_failed=False`` (frames) drops a record whose send failed; ``True`` (audio)
    retries it in order. ``max_in_flight`` bounds records handed to the Kafka client but
    not yet acknowledged, so the bounded buffer here is the only place records pile up.
    """

    def __init__(self, make_producer: Callable[[], AIOKafkaProducer], topic: str, *, capacity: int,
                 retry_failed: bool, max_in_flight: int = 256,
                 retry_backoff_s: tuple[float, float] = (0.2, 5.0)) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._make_producer = make_producer
        self.producer: AIOKafkaProducer | None = None
        self._renew = False
        self.topic = topic
        self.retry_failed = retry_failed
        self.stats = PublisherStats()
        self._buffer: deque[Record] = deque()
        self._capacity = capacity
        self._ready = asyncio.Event()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._backoff = retry_backoff_s
        self._closing = False
        self._giving_up = False
        self._pending: set[asyncio.Future] = set()

    async def start(self) -> None:
        """Connect to Kafka (raises the client's connection error if the broker is not there)."""
        self.producer = self._make_producer()
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    async def _renew_producer(self) -> None:
        self._renew = False
        old, self.producer = self.producer, self._make_producer()
        try:
            await asyncio.wait_for(old.stop(), 5)
        except Exception as exc:  # it is broken anyway; its unsent batches were failed back to us
            log.debug("closing the old producer: %s", exc)
        await self.producer.start()
        self.stats.renewed += 1
        RENEWED.labels(self.topic).inc()
        log.warning("replaced the Kafka producer for %s (its idempotence state was rejected)", self.topic)

    # -- sensor side ---------------------------------------------------------------------
    def offer(self, key: bytes, value: bytes, headers: Headers) -> None:
        """Queue one record; never blocks. Past capacity the oldest record is dropped."""
        self.stats.offered += 1
        if len(self._buffer) >= self._capacity:
            self._buffer.popleft()
            self.stats.dropped_full += 1
            DROPPED.labels(self.topic, "buffer_full").inc()
        self._buffer.append(Record(key, value, headers))
        BUFFERED.labels(self.topic).set(len(self._buffer))
        self._ready.set()

    def __len__(self) -> int:
        return len(self._buffer)

    # -- Kafka side ----------------------------------------------------------------------
    async def run(self) -> None:
        """Send until ``close()`` was called and everything offered has been settled."""
        failures = 0
        while True:
            if not self._buffer:
                if self._closing and not self._pending:
                    return
                self._ready.clear()
                if self._closing:  # a pending delivery may fail and come back to the buffer
                    await asyncio.wait(set(self._pending), return_when=asyncio.FIRST_COMPLETED)
                else:
                    await self._ready.wait()
                continue
            await self._slots.acquire()
            if self._renew:
                try:
                    await self._renew_producer()
                except Exception as exc:  # broker still away: try again after a pause
                    self._slots.release()
                    log.warning("cannot reconnect to Kafka yet: %s", exc)
                    self._renew = True
                    await asyncio.sleep(self._backoff[1])
                    continue
            record = self._buffer.popleft()
            BUFFERED.labels(self.topic).set(len(self._buffer))
            try:
                delivery = await self.producer.send(self.topic, value=record.value, key=record.key,
                                                    headers=record.headers)
            except Exception as exc:  # the client could not even queue it (broker away, timeout)
                self._slots.release()
                failures += 1
                self._failed(record, exc)
                if self.retry_failed:
                    await asyncio.sleep(min(self._backoff[1], self._backoff[0] * 2 ** min(failures, 8)))
                continue
            failures = 0
            self._pending.add(delivery)
            delivery.add_done_callback(lambda fut, r=record: self._settled(fut, r))

    def _settled(self, fut: asyncio.Future, record: Record) -> None:
        self._pending.discard(fut)
        self._slots.release()
        exc = fut.exception() if not fut.cancelled() else asyncio.CancelledError()
        if exc is None:
            self.stats.published += 1
            PUBLISHED.labels(self.topic).inc()
        else:
            self._failed(record, exc)

    def _failed(self, record: Record, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, BROKEN_PRODUCER):
            self._renew = True
        if len(self.stats.errors) < 20:
            self.stats.errors.append(reason)
        if self.retry_failed and not self._giving_up:
            self.stats.retried += 1
            RETRIED.labels(self.topic).inc()
            if len(self._buffer) >= self._capacity:
                self.stats.dropped_full += 1
                DROPPED.labels(self.topic, "buffer_full").inc()
            else:
                self._buffer.appendleft(record)
                self._ready.set()
            log.warning("send to %s failed, will retry: %s", self.topic, reason)
        else:
            self.stats.dropped_failed += 1
            DROPPED.labels(self.topic, "send_failed").inc()
            log.warning("send to %s failed, record dropped: %s", self.topic, reason)

    def close(self, *, give_up: bool = False) -> None:
        """Stop accepting the idle wait: ``run()`` returns once the buffer is settled.
        ``give_up=True`` drops what cannot be sent instead of retrying forever."""
        self._closing = True
        self._giving_up = give_up
        if give_up:
            while self._buffer:
                self._buffer.popleft()
                self.stats.dropped_failed += 1
                DROPPED.labels(self.topic, "shutdown").inc()
        self._ready.set()
