"""The alerting service: detections in, notifications and lifecycle events out (DESIGN §6).

    detections ─▶ DetectionConsumer (dedup: confirm, deduplicate, corroborate in Redis)
               ─▶ timers ─▶ Dispatcher (wait, route, silence, inhibit; decision + outbox, atomic)
               ─▶ ChannelWorker per channel (retry with backoff, breaker, dead letter; log)
               ─▶ webhook / Slack / Twilio / Apprise, and the `alerts` topic

Every replica runs all three loops; Redis (scripts, leases, compare-and-set) keeps them from
stepping on each other, so replicas can be added or killed at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

import redis.asyncio as aioredis
from aiokafka import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from redis.exceptions import RedisError, ResponseError

from alerting import metrics
from alerting.capture import EvidenceCollector
from alerting.channels import Channel, build_channel
from alerting.config import AlertingServiceSettings
from alerting.consumer import DetectionConsumer
from alerting.delivery import ChannelWorker
from alerting.dispatch import Dispatcher
from alerting.events import ALERTS_CHANNEL, AlertsTopicChannel
from alerting.evidence import EvidenceStore
from alerting.inhibition import Inhibitor
from alerting.outbox import Outbox
from alerting.rebuild import rebuild_if_lost
from alerting.routing import Router
from alerting.silences import SilenceStore
from alerting.state import AlertState
from skysentry.bus import client_options, make_consumer, make_producer
from skysentry.config import KafkaSettings, TopicSettings
from skysentry.logs import redact
from skysentry.metrics import HEALTH
from skysentry.topics import dlq, topic_specs

log = logging.getLogger(__name__)


def redis_client(settings: AlertingServiceSettings) -> aioredis.Redis:
    return aioredis.from_url(settings.redis.url.get_secret_value(), decode_responses=True,
                             health_check_interval=30, socket_keepalive=True)


def build_channels(settings: AlertingServiceSettings) -> dict[str, Channel]:
    return {name: build_channel(name, cfg) for name, cfg in settings.alerting.channels.items()}


async def ensure_alerting_topics(kafka: KafkaSettings, topics: TopicSettings) -> None:
    """Create the topics alerting reads and writes (and only those) if missing."""
    wanted = {topics.detections, topics.alerts, dlq(topics.detections)}
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        specs = [s for s in topic_specs(topics, kafka) if s.name in wanted and s.name not in existing]
        if specs:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(specs)
    finally:
        await admin.close()


class ServiceStartError(RuntimeError):
    """Kafka or Redis cannot be reached at start, or Redis would lose alert state; the
    message says where and what to do."""


async def check_redis_keeps_keys(redis: aioredis.Redis, *, allow_evicting: bool) -> None:
    """Refuse a Redis that evicts keys when full: an evicted alert fires again, an evicted
    outbox entry is a notification lost. ``maxmemory`` 0 (no limit) or the ``noeviction``
    policy is fine. A Redis that refuses CONFIG (managed services often do) gets a warning, and
    so does one that may answer a write before it is on disk (not ``appendonly yes`` with
    ``appendfsync always``): its crash can lose an alert's last change (docs/drills.md)."""
    try:
        conf = await redis.config_get("maxmemory*", "append*")
    except ResponseError as exc:
        log.warning("cannot check Redis's eviction policy (CONFIG GET refused: %s); alert state needs "
                    "maxmemory-policy noeviction", exc)
        return
    policy, limit = conf.get("maxmemory-policy", "noeviction"), int(conf.get("maxmemory", 0))
    if limit and policy != "noeviction":
        problem = (f"Redis evicts keys when full (maxmemory {limit}, maxmemory-policy {policy}), which would lose "
                   "alert state and queued notifications")
        if not allow_evicting:
            raise ServiceStartError(f"{problem}: set maxmemory-policy noeviction (or maxmemory 0), or accept the "
                                    "risk with --allow-evicting-redis (alerting.allow_evicting_redis: true).")
        log.warning("%s; starting anyway (allow_evicting_redis)", problem)
    persistence = (conf.get("appendonly"), conf.get("appendfsync"))
    if persistence != ("yes", "always"):
        log.warning("Redis runs with appendonly %s, appendfsync %s: a crash of Redis can lose the alert state of "
                    "its last moments (an alert fired again, a notification sent twice); run it with appendonly "
                    "yes and appendfsync always", *persistence)


class _ReadyOnAssignment(ConsumerRebalanceListener):
    """The consumer's own listener, then /readyz's "partitions" condition: met once the group
    gave this replica its assignment (possibly none: more replicas than partitions)."""

    def __init__(self, inner: ConsumerRebalanceListener) -> None:
        self.inner = inner

    async def on_partitions_revoked(self, revoked) -> None:
        await self.inner.on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned) -> None:
        await self.inner.on_partitions_assigned(assigned)
        HEALTH.set("partitions", True, f"{len(assigned)} assigned")


class AlertingService:
    def __init__(self, settings: AlertingServiceSettings, *, instance: str | None = None):
        self.settings = settings
        self.instance = instance or settings.alerting.instance_id or f"{socket.gethostname()}-{os.getpid()}"
        self.ready = asyncio.Event()  # consumer started, loops running
        self.assigned: asyncio.Event | None = None  # set while it owns partitions of `detections`

    async def run(self, stop: asyncio.Event) -> None:
        s, a = self.settings, self.settings.alerting
        HEALTH.require("consumer", "partitions")  # /readyz: consumer started, group assignment received
        redis = redis_client(s)
        try:
            await redis.ping()
        except (RedisError, OSError) as exc:
            await redis.aclose()
            url = redact(s.redis.url.get_secret_value())
            raise ServiceStartError(f"cannot reach Redis at {url}: {str(exc).rstrip('.')}. "
                                    "Start it (`skysentry stack up`) or point REDIS_URL at one.") from None
        try:
            await check_redis_keeps_keys(redis, allow_evicting=a.allow_evicting_redis)
        except ServiceStartError:
            await redis.aclose()
            raise
        try:
            await ensure_alerting_topics(s.kafka, s.topics)
        except (KafkaError, OSError) as exc:
            await redis.aclose()
            raise ServiceStartError(f"cannot reach Kafka at {s.kafka.bootstrap_servers}: {str(exc).rstrip('.')}. "
                                    "Start it (`skysentry stack up`) or point KAFKA_BOOTSTRAP_SERVERS at one.") from None
        router = Router(a.route)
        try:  # after Redis lost its data, the open alerts come back from the alerts topic
            await rebuild_if_lost(redis, a, router, s.kafka, s.topics.alerts, self.instance)
        except (KafkaError, OSError) as exc:
            await redis.aclose()
            raise ServiceStartError(f"cannot read the {s.topics.alerts} topic to check for open alerts: {exc}") from None
        state = AlertState(redis, a)
        outbox = Outbox(redis, a.key_prefix, dead_letter_max=a.outbox.dead_letter_max)
        silences = SilenceStore(redis, a.key_prefix)
        channels = build_channels(s)
        kafka = s.kafka.model_copy(update={"client_id": f"{s.kafka.client_id}-alerting-{self.instance}"})
        producer = make_producer(kafka)
        await producer.start()
        channels[ALERTS_CHANNEL] = AlertsTopicChannel(producer, s.topics.alerts, a.source_name,
                                                      timeout_s=min(15.0, a.outbox.lease / 2))
        workers = {name: ChannelWorker(ch, outbox, lease_s=a.outbox.lease, poll_s=a.outbox.poll)
                   for name, ch in channels.items()}
        tick_wakeup = asyncio.Event()

        def wake(names) -> None:
            for name in names:
                if name in workers:
                    workers[name].wake()

        collector = await self._evidence_collector(kafka)
        dispatcher = Dispatcher(state, router, silences, Inhibitor(a.inhibit_rules), channels, a, on_outbox=wake,
                                evidence=collector)
        consumer = make_consumer(kafka, group_id=a.group_id, group_instance_id=a.instance_id,
                                 session_timeout_ms=a.session_timeout_ms,
                                 heartbeat_interval_ms=max(1000, a.session_timeout_ms // 3),
                                 max_poll_interval_ms=300_000)
        # Redis may lose its data while we run, too: check the marker before every batch applied
        detections = DetectionConsumer(consumer, producer, state, a, on_new_alert=tick_wakeup.set,
                                       before_batch=lambda: rebuild_if_lost(redis, a, router, s.kafka,
                                                                            s.topics.alerts, self.instance))
        self.assigned = detections.listener.assigned
        consumer.subscribe([s.topics.detections], listener=_ReadyOnAssignment(detections.listener))
        await consumer.start()
        HEALTH.set("consumer", True, f"group {a.group_id}")

        intake_stop = asyncio.Event()  # detections and timers stop first, senders last
        send_stop = asyncio.Event()
        tasks = [asyncio.create_task(detections.run(intake_stop), name="detections"),
                 asyncio.create_task(self._tick_loop(state, dispatcher, tick_wakeup, intake_stop), name="timers"),
                 asyncio.create_task(self._gauges(state, outbox, intake_stop), name="gauges")]
        if collector is not None:
            tasks.append(asyncio.create_task(self._prune_loop(collector.store, intake_stop), name="evidence-retention"))
        senders = [asyncio.create_task(w.run(send_stop, a.shutdown_grace), name=f"channel:{n}")
                   for n, w in workers.items()]
        log.info("alerting running", extra={"fields": {
            "instance": self.instance, "group": a.group_id, "channels": sorted(a.channels),
            "detections": s.topics.detections, "alerts": s.topics.alerts}})
        self.ready.set()
        stopped = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait([stopped, *tasks, *senders], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stopped:
                    t.result()  # a loop ended on its own: raise what killed it
        finally:
            stopped.cancel()
            HEALTH.set("consumer", False, "stopping")
            await self._shutdown(redis, outbox, consumer, producer, channels, tasks, senders, intake_stop, send_stop)
            if collector is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(collector.close(), 2.0)

    async def _shutdown(self, redis, outbox: Outbox, consumer, producer, channels: dict[str, Channel],
                        tasks: list[asyncio.Task], senders: list[asyncio.Task], intake_stop: asyncio.Event,
                        send_stop: asyncio.Event) -> None:
        """Stop within ``shutdown_grace`` (and a second or two), whether or not Kafka, Redis or
        a receiver answers: intake first, then the senders get what is left of the grace for
        sends in flight, and every step that waits on the broker is bounded (a consumer
        leaving a group or a producer flushing to a broker that is down waits forever). What
        was not delivered stays in the outbox for the next replica, and the last line says so."""
        loop = asyncio.get_running_loop()
        grace = self.settings.alerting.shutdown_grace
        deadline = loop.time() + grace

        async def bounded(what: str, aw, limit: float) -> None:
            try:
                await asyncio.wait_for(aw, timeout=max(0.5, limit))
            except asyncio.TimeoutError:
                log.warning("%s did not finish within %.1f s; going on without it", what, max(0.5, limit))
            except asyncio.CancelledError:  # aiokafka cancels its own waits when the broker is gone
                if asyncio.current_task().cancelling():
                    raise
                log.warning("%s was cut short", what)
            except Exception as exc:  # noqa: BLE001 - stopping: say it and carry on
                log.warning("%s failed: %s", what, exc)

        intake_stop.set()
        await bounded("stopping intake", asyncio.gather(*tasks, return_exceptions=True), min(3.0, grace / 3))
        # leave the group now (others take the partitions at once); bounded: the broker may be down
        await bounded("leaving the consumer group", consumer.stop(), min(3.0, grace / 3))
        send_stop.set()
        await bounded("sending what was in flight", asyncio.gather(*senders, return_exceptions=True),
                      deadline - loop.time())
        await bounded("flushing the producer", producer.stop(), min(2.0, deadline - loop.time()))
        for ch in channels.values():
            with contextlib.suppress(Exception):
                await ch.aclose()
        try:
            pending = {ch: n for ch, n in (await asyncio.wait_for(outbox.depth(), 2.0)).items() if n}
        except Exception:  # noqa: BLE001 - Redis away: cannot say
            pending = None
        with contextlib.suppress(Exception):
            await redis.aclose()
        fields = {"instance": self.instance, "undelivered": pending}
        if pending is None:
            log.warning("alerting stopped; Redis did not answer, so what is still undelivered is unknown "
                        "(the outbox keeps it for the next replica)", extra={"fields": fields})
        elif pending:
            log.warning("alerting stopped with %d notification(s) not delivered (%s); they stay in the outbox "
                        "and go out when a replica runs", sum(pending.values()),
                        ", ".join(f"{ch}: {n}" for ch, n in sorted(pending.items())), extra={"fields": fields})
        else:
            log.info("alerting stopped; everything decided was delivered", extra={"fields": fields})

    async def _evidence_collector(self, kafka) -> EvidenceCollector | None:
        """The evidence capture (alerting/capture.py), started; None when evidence is off or
        cannot start (alerts go out without it, and the log says why)."""
        if not self.settings.evidence.enabled:
            return None
        try:
            collector = EvidenceCollector(self.settings.evidence, kafka, self.settings.topics)
            await collector.start()
        except Exception as exc:  # noqa: BLE001 - evidence never stops the alerting
            log.error("evidence is off: %s: %s", type(exc).__name__, str(exc)[:300])
            return None
        log.info("evidence on", extra={"fields": {"store": redact(collector.store.url),
                                                  "links": self.settings.evidence.secret is not None}})
        return collector

    async def _prune_loop(self, store: EvidenceStore, stop: asyncio.Event) -> None:
        """Retention: by age, then by total size (every replica runs it; removing is idempotent)."""
        e = self.settings.evidence
        while not stop.is_set():
            try:
                pruned = await asyncio.to_thread(store.prune, e.max_age, e.max_bytes)
                if pruned.removed:
                    log.info("evidence retention removed %d set(s), %d bytes; %d kept, %d bytes", pruned.removed,
                             pruned.removed_bytes, pruned.kept, pruned.kept_bytes)
            except Exception as exc:  # noqa: BLE001 - try again next time
                log.warning("evidence retention failed: %s: %s", type(exc).__name__, str(exc)[:300])
            await _sleep(stop, e.prune_interval)

    async def _tick_loop(self, state: AlertState, dispatcher: Dispatcher, wakeup: asyncio.Event,
                         stop: asyncio.Event) -> None:
        poll = self.settings.alerting.tick_poll
        limit = 64
        while not stop.is_set():
            wakeup.clear()
            fps: list[str] = []
            try:
                now, fps = await state.claim_due(limit)
                if fps:
                    await asyncio.gather(*(dispatcher.tick(fp, now) for fp in fps))
            except Exception:
                log.exception("timer evaluation failed; claimed alerts return when their lease ends")
                await _sleep(stop, 1.0)
                continue
            if len(fps) >= limit:
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout=poll)

    async def _gauges(self, state: AlertState, outbox: Outbox, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                metrics.ALERTS_FIRING.set(await state.firing_count())
                watermark = await state.watermark_ms()
                if watermark is not None:
                    metrics.READ_LAG.set((await state.now_ms() - watermark) / 1000)
                for channel, depth in (await outbox.depth()).items():
                    metrics.OUTBOX_DEPTH.labels(channel).set(depth)
            except Exception:
                log.debug("gauge refresh failed", exc_info=True)
            await _sleep(stop, 1.0)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
