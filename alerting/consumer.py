"""The dedup stage: read ``detections``, confirm and deduplicate each in Redis, commit.

At-least-once with idempotent effects: offsets are committed only after Redis has applied
the batch, and ``observe`` ignores a detection it has seen, so a replay after a crash or a
rebalance changes nothing. Records that are not readable detections go to
``detections.dlq`` with the reason (as are records of an unknown content type, and events
dated beyond ``max_clock_skew`` in the future: a wrong clock must not fire, nor resolve before
it fired; and detections captured longer than ``max_detection_age`` ago: a replayed backlog or
a stopped clock must not page anyone); either CloudEvents mode is read; score summaries (the other event type on the topic) are
noted as the processor's word that it is watching the source (what keeps an alert of a quiet
source from resolving, see alerting/lifecycle.py) and skipped, and so are detections of a
class that does not alert: a vision model reports the class it saw (``bird``, ``airplane``,
``helicopter`` as well as ``drone``) and only the labels in ``alerting.alert_labels``
(default ``drone``) enter confirmation; the others are valid messages, counted (outcome
``not_alerting_label``) and committed, never dead-lettered.
A rebalance waits for the batch in hand to be applied and committed.

After each poll the consumer also reports, per partition it owns, up to when it has observed
what was written there (now, when it has read up to the partition's end; otherwise the write
time of the last record read): the watermark that resolving an alert waits for, so a restart,
a rebalance or a backlog can never make an alert resolve while its detections sit unread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError

from alerting import metrics
from alerting.config import AlertingSettings
from alerting.state import AlertState, Observation
from skysentry.bus import send_to_dlq
from skysentry.logs import kv
from skysentry.messages import ContractError, Detection, ScoreSummary, decode_event

log = logging.getLogger(__name__)

WATERMARK_EVERY_S = 0.5  # how often the observed-up-to marks go to Redis


class _WaitForBatch(ConsumerRebalanceListener):
    """Before partitions move, let the batch in hand finish (it commits its own offsets)."""

    def __init__(self, lock: asyncio.Lock):
        self.lock = lock
        self.assigned = asyncio.Event()  # set while this replica owns partitions

    async def on_partitions_revoked(self, revoked) -> None:
        self.assigned.clear()
        async with self.lock:
            pass

    async def on_partitions_assigned(self, assigned) -> None:
        log.info("assigned %d partition(s) of detections", len(assigned),
                 extra=kv(event="assigned", partitions=sorted(tp.partition for tp in assigned)))
        if assigned:
            self.assigned.set()


class DetectionConsumer:
    def __init__(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, state: AlertState,
                 settings: AlertingSettings, on_new_alert: Callable[[], None] = lambda: None,
                 before_batch: Callable[[], Awaitable[object]] | None = None):
        self.consumer = consumer
        self.producer = producer
        self.state = state
        self.settings = settings
        self.on_new_alert = on_new_alert
        self.before_batch = before_batch  # e.g. rebuild what a Redis that lost its data forgot
        self.lock = asyncio.Lock()
        self.listener = _WaitForBatch(self.lock)
        self._marked_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                batch = await self.consumer.getmany(timeout_ms=100, max_records=self.settings.batch_max)
            except KafkaError:
                log.exception("fetching detections failed; retrying")
                await asyncio.sleep(1.0)
                continue
            if not batch:
                await self.mark_watermarks({})
                continue
            async with self.lock:
                try:
                    if self.before_batch is not None:
                        await self.before_batch()
                    await self.process([r for records in batch.values() for r in records])
                except Exception:
                    # Redis (or the DLQ) is away: rewind and try the same records again.
                    log.exception("processing %d detections failed; rewinding to retry",
                                  sum(len(r) for r in batch.values()))
                    for tp, records in batch.items():
                        self.consumer.seek(tp, records[0].offset)
                    await asyncio.sleep(1.0)
                    continue
                try:
                    await self.consumer.commit()
                except CommitFailedError:
                    log.warning("offset commit lost to a rebalance; the new owner replays (harmless: "
                                "detections are deduplicated)")
                except KafkaError:
                    log.exception("offset commit failed; these detections may be replayed (harmless)")
                await self.mark_watermarks(batch)
        await self.mark_watermarks({}, final=True)

    async def mark_watermarks(self, batch: dict, *, final: bool = False) -> None:
        """Report how far each owned partition has been observed (at most every
        ``WATERMARK_EVERY_S``, and once more when stopping); ``batch`` holds the records just
        applied. A failure only delays resolves, so it is logged and the next poll tries again."""
        if not final and time.monotonic() - self._marked_at < WATERMARK_EVERY_S:
            return
        now_ms = time.time() * 1000
        ages: dict[int, float] = {}
        try:
            owned = self.consumer.assignment()
            for tp in owned:
                high, polled = self.consumer.highwater(tp), self.consumer.last_poll_timestamp(tp)
                if high is None or polled is None:  # not fetched yet
                    continue
                if await self.consumer.position(tp) >= high:  # read to the end, as of the last fetch
                    ages[tp.partition] = now_ms - polled
                elif batch.get(tp) and batch[tp][-1].timestamp >= 0:  # behind: up to the last record read
                    ages[tp.partition] = now_ms - batch[tp][-1].timestamp
            if ages:  # (none before the first fetch of a partition: try again next poll)
                partitions = len(self.consumer.partitions_for_topic(next(iter(owned)).topic) or ())
                await self.state.advance_watermarks(partitions, ages)
                self._marked_at = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - a rebalance mid-way or Redis away: next poll
            log.warning("watermark not reported: %s", exc)

    async def process(self, records) -> list[Observation]:
        detections: list[Detection] = []
        reports: list[tuple[str, str, float, bool]] = []  # (site, source, age_ms, is_summary)
        now = datetime.now(timezone.utc)
        now_ms = now.timestamp() * 1000
        confirm = self.settings.confirm
        alert_labels = self.settings.alert_labels
        for record in records:
            try:
                _, message = decode_event(record.value, record.headers, (Detection, ScoreSummary))
                dated = message.window_end if isinstance(message, ScoreSummary) else message.captured_at
                ahead = (dated - now).total_seconds()
                if ahead > self.settings.max_clock_skew:
                    raise ContractError(f"dated {dated.isoformat()}, {ahead:.1f} s in the future (beyond "
                                        f"max_clock_skew {self.settings.max_clock_skew:g} s): the sender's clock is wrong")
                if isinstance(message, Detection) and -ahead > self.settings.max_detection_age:
                    metrics.DETECTIONS.labels("too_old").inc()
                    raise ContractError(f"captured {dated.isoformat()}, {-ahead:.1f} s ago (beyond max_detection_age "
                                        f"{self.settings.max_detection_age:g} s): too old to alert on")
            except ContractError as exc:
                await send_to_dlq(self.producer, record, str(exc))
                metrics.INVALID.inc()
                continue
            age = now_ms - record.timestamp if record.timestamp >= 0 else 0.0
            reports.append((message.site, message.source, age, isinstance(message, ScoreSummary)))
            if isinstance(message, ScoreSummary):
                metrics.DETECTIONS.labels("summary").inc()
                continue
            if message.label not in alert_labels:  # a bird seen is not a drone missed: skip, never DLQ
                metrics.DETECTIONS.labels("not_alerting_label").inc()
                continue
            if message.score < confirm.threshold:
                metrics.DETECTIONS.labels("below_threshold").inc()
                continue
            detections.append(message)
        if self.settings.stale_after:
            await self.state.note_reports(reports)
        results = await self.state.observe_many(detections)
        new_alert = False
        for obs in results:
            metrics.DETECTIONS.labels(obs.outcome).inc()
            if obs.outcome == "replay":
                metrics.DEDUP_HITS.labels("replay").inc()
            elif obs.outcome in ("refresh", "corroborated"):
                metrics.DEDUP_HITS.labels("active_alert").inc()
            if obs.outcome in ("fired", "corroborated"):
                new_alert = True
        if new_alert:
            self.on_new_alert()
        return results
