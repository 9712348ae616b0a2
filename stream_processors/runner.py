"""A processor process: a faust-streaming agent around a :class:`~stream_processors.core.Pipeline`.

Delivery (DESIGN §4, at-least-once) rests on how faust acknowledges, and on one extra
reference per input:

* the agent reads ``stream.take_events(max_batch, within=max_wait_s)``. ``take_events``
  disables the stream's own acking and acks a batch's events when the agent body returns;
* before returning, the body takes one more reference on every event of the batch
  (``message.incref()``), so that ack does not make them committable. A task then runs the
  model, sends every detection and dead letter with the kernel's idempotent ``acks=all``
  producer, awaits each send's future — the broker's acknowledgement — and only then drops
  the last reference (``event.ack()``): that is when faust marks the offset as done;
* faust's committer commits, every ``commit_interval_s``, the offset below which every event
  is done. So an input's offset is committed only after its outputs are in Kafka.

Pipelining: batch k+1 is decoded (stage 1, in the agent) and queued on the pipeline's
inference thread while batch k is inferred and its outputs are in flight; model runs happen
one at a time, back to back, and batches are released strictly in order (at most
``max_inflight_batches`` at once). In-order release matters beyond tidiness:
faust-streaming 0.15.3's ``Consumer._new_offset`` commits past an offset still in flight
when only the offset right after it has been acked (committed 10, acked [11, 12] → 13; see
tests/unit/detectors/test_delivery_order.py); per partition we never ack out of order.

Nothing in the body raises: a bad record becomes a dead letter, a batch the model cannot run
is retried one by one, Kafka errors on the outputs are retried with back-off. If outputs still
cannot be delivered while shutting down, the process exits at once with status 75
(EX_TEMPFAIL) without releasing the batch, so it is read again after the restart. A crashed
faust app or a dead side task ends the process with an error (crash-only). A graceful stop
pauses fetching, lets the batches in flight finish, commits, then stops faust.

Outputs use the kernel producer (:func:`skysentry.bus.make_producer`), not faust's
``topic.send``: the delivery rules of DESIGN §4 live in one place for every service, and the
dead letters reuse :func:`skysentry.bus.send_to_dlq`. Announcements on ``models`` are read
by :class:`~stream_processors.models_watch.ModelsWatcher` (every process reads every one).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from datetime import timedelta

import faust
from aiokafka.errors import KafkaError

from detectors.base import ModelRefused, missing_model_message
from detectors.registry import ModelRegistry, ModelSlot, Reloader, load_announced, load_detector
from skysentry.bus import make_producer, send_to_dlq
from skysentry.logs import kv
from skysentry.messages import ModelAnnouncement, encode_structured, utcnow
from skysentry.metrics import HEALTH
from skysentry.topics import ensure_topics
from stream_processors import metrics as m
from stream_processors.core import BatchResult, InputRecord, Prepared
from stream_processors.faust_app import ProcessorApp
from stream_processors.models_watch import ModelsWatcher
from stream_processors.settings import ProcessorSettings, make_pipeline

log = logging.getLogger(__name__)


def with_modality(modality: str, reason: str) -> str:
    """A dead letter's reason names the modality it concerns (``vision: not a JPEG ...``), so one
    read of a shared DLQ or log says which processor refused what."""
    return reason if reason.lower().startswith(modality) else f"{modality}: {reason}"

EX_TEMPFAIL = 75


def faust_broker(bootstrap_servers: str) -> list[str]:
    return [f"kafka://{s.strip()}" for s in bootstrap_servers.split(",") if s.strip()]


class ProcessorService:
    """One vision or audio processor: ``await ProcessorService(settings, "vision").run(stop)``."""

    def __init__(self, settings: ProcessorSettings, modality: str) -> None:
        self.settings = settings
        self.modality = modality
        self.config = settings.processor(modality)
        self.source = self.config.source or f"skysentry/processor/{modality}"
        self.input_topic = settings.input_topic(modality)
        self.detections_topic = settings.topics.detections
        self.started = asyncio.Event()  # the model serves and the consumer has joined its group
        self.assigned: list[tuple[str, int]] = []
        self.batches = 0
        self.slot: ModelSlot | None = None
        self.reloader: Reloader | None = None
        self._stopping = False
        self._summary_lock = asyncio.Lock()
        self._inflight = asyncio.Semaphore(self.config.max_inflight_batches)
        self._last_batch: asyncio.Task | None = None  # the newest batch past stage 1 (infer → deliver → release)
        self._app: faust.App | None = None
        self._datadir: str | None = None

    # -- start-up ------------------------------------------------------------------------

    def _load_initial(self, announced: list[ModelAnnouncement], registry: ModelRegistry):
        """The newest valid announcement for this task, else the configured default model."""
        base = self.config.detector
        for ann in reversed(announced):
            if ann.task != self.modality or (self.config.accept_model_names is not None
                                             and ann.name not in self.config.accept_model_names):
                continue
            try:
                return load_announced(ann, base, registry, self.config.max_batch)
            except Exception as exc:
                log.error("announced model %s@%s refused at start (%s); trying older or the default",
                          ann.name, ann.version, exc)
        if not base.model.is_file():
            raise ModelRefused(missing_model_message(base.model))
        detector = load_detector(base)
        detector.warm_up(self.config.max_batch)
        return detector

    def _build_app(self) -> faust.App:
        cfg, kafka = self.config, self.settings.kafka
        self._datadir = tempfile.mkdtemp(prefix=f"skysentry-faust-{self.modality}-")
        app = ProcessorApp(
            cfg.group_id,
            broker=faust_broker(kafka.bootstrap_servers),
            broker_client_id=f"{kafka.client_id}-{self.modality}-processor",
            value_serializer="raw",
            key_serializer="raw",
            web_enabled=False,
            topic_allow_declare=False,  # topics come from skysentry.topics (partitions, retention)
            topic_disable_leader=True,
            datadir=self._datadir,
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=cfg.commit_interval_s,
            broker_session_timeout=cfg.session_timeout_s,
            broker_heartbeat_interval=max(1.0, cfg.session_timeout_s / 4),
            broker_request_timeout=max(kafka.request_timeout_ms / 1000, cfg.session_timeout_s + 5),
            consumer_max_fetch_size=kafka.max_message_bytes,
            # faust pauses a partition when its queue is 80 % full and resumes it below 40 %; the
            # queue holds about a second of work. (Plain faust also idles a second whenever every
            # partition is paused, which made the size critical; ProcessorApp resumes at once.)
            stream_buffer_maxsize=cfg.buffer_windows or max(512, 64 * cfg.max_batch),
            broker_credentials=_credentials(kafka),
        )
        topic = app.topic(self.input_topic, key_serializer="raw", value_serializer="raw")

        async def infer(stream):
            async for events in stream.take_events(cfg.max_batch, within=cfg.max_wait_s):
                await self._handle(events)

        app.agent(topic, name=f"skysentry-{self.modality}-processor", concurrency=1)(infer)

        async def on_assigned(sender, assigned, **_):
            self.assigned = sorted((tp.topic, tp.partition) for tp in assigned if tp.topic == self.input_topic)
            m.ASSIGNED_PARTITIONS.labels(self.modality).set(len(self.assigned))
            HEALTH.set("partitions", True, f"{len(self.assigned)} of {self.input_topic}")
            log.info("assigned partitions", extra=kv(event="assigned", topic=self.input_topic,
                                                     partitions=[p for _, p in self.assigned], pid=os.getpid()))
            self.started.set()

        app.on_partitions_assigned.connect(on_assigned)
        return app

    # -- the batch -----------------------------------------------------------------------

    async def _handle(self, events: list) -> None:
        """Stage 1 here (in batch order); inference, delivery and release in a task, so the
        next batch is decoded while this one is inferred and its outputs are in flight."""
        records = [InputRecord.of(e.message) for e in events]
        # faust's monitor stamps each message with the monotonic time its consumer fetched it:
        # carried into the detections' timing as wall-clock time (latency per stage)
        wall, mono = utcnow(), time.monotonic()
        for record, e in zip(records, events):
            time_in = getattr(e.message, "time_in", None)
            if time_in is not None and 0 <= mono - time_in < 3600:
                record.received_at = wall - timedelta(seconds=mono - time_in)
        m.WINDOWS_IN.labels(self.modality).inc(len(records))
        try:
            prepared: Prepared | BatchResult = await self.pipeline.prepare(records)
        except Exception as exc:  # a bug, not bad input: keep the data (DLQ) and keep going
            prepared = self._failed(records, exc)
        # Hold every event: take_events acks them as soon as this returns, but with the extra
        # reference faust counts an event as done (committable) only when the batch task
        # releases it, after Kafka acknowledged the batch's outputs. At most
        # max_inflight_batches batches are past this point at once.
        for e in events:
            e.message.incref()
        await self._inflight.acquire()
        if isinstance(prepared, Prepared):
            self.pipeline.start_inference(prepared)  # queued behind the previous batch's model run
        self._last_batch = asyncio.create_task(self._finish_batch(prepared, records, events, self._last_batch))

    def _failed(self, records: list[InputRecord], exc: BaseException) -> BatchResult:
        log.exception("processor failed on a batch of %d; dead-lettering it", len(records), exc_info=exc)
        result = BatchResult(dead=[(r, f"processor error: {type(exc).__name__}: {exc}"[:500]) for r in records])
        result.outcomes["dead_lettered"] = len(records)
        return result

    async def _finish_batch(self, prepared, records: list[InputRecord], events: list,
                            previous: asyncio.Task | None) -> None:
        try:
            try:
                result = prepared if isinstance(prepared, BatchResult) else await self.pipeline.finish(prepared)
            except Exception as exc:
                result = self._failed(records, exc)
            delivered = await self._deliver(result)
            if previous is not None:
                # release in batch order: per partition, offsets are then acked in order, and
                # faust commits only below the first offset not yet acked
                await asyncio.shield(previous)
            if not delivered:
                log.critical("outputs of a batch could not be delivered while stopping; exiting without "
                             "committing it (it is read again after the restart)")
                logging.shutdown()
                os._exit(EX_TEMPFAIL)
            for e in events:
                e.ack()  # the last reference: now the offset may be committed
            self._count(result)
            self.batches += 1
        finally:
            self._inflight.release()

    async def _deliver(self, result: BatchResult) -> bool:
        """Send detections and dead letters; return once Kafka acknowledged all of them."""
        encoded = [(d, *encode_structured(d, source=self.source)) for d in result.detections]
        attempt = 0
        while True:
            try:
                futures = [await self.producer.send(self.detections_topic, value=value, key=d.source.encode(),
                                                    headers=headers) for d, value, headers in encoded]
                for record, reason in result.dead:
                    await send_to_dlq(self.producer, record, with_modality(self.modality, reason))
                    m.DEAD_LETTERED.labels(self.modality, reason.split(":", 1)[0]).inc()
                await asyncio.gather(*futures)
                if result.outcomes["stale"]:
                    # stale windows are accounted for only by the summaries' ``skipped`` counts:
                    # make the count durable before their offsets can commit (at-least-once for
                    # the count too). Gated windows ride with the regular once-a-second summary.
                    if not await self.flush_summaries():
                        raise KafkaError("score summaries not delivered")
                acked_at = utcnow()
                for d in result.detections:
                    m.CAPTURE_TO_DETECTION.labels(self.modality).observe((acked_at - d.captured_at).total_seconds())
                return True
            except KafkaError as exc:
                attempt += 1
                m.SEND_RETRIES.labels(self.modality).inc()
                if self._stopping and attempt >= 3:
                    return False
                delay = min(self.config.send_retry_max_s, 0.1 * 2 ** attempt)
                log.warning("sending outputs failed (%s); retry %d in %.1fs", exc, attempt, delay)
                await asyncio.sleep(delay)

    def _count(self, result: BatchResult) -> None:
        mod = self.modality
        for outcome, n in result.outcomes.items():
            if n:
                m.WINDOWS_OUT.labels(mod, outcome).inc(n)
        if result.outcomes["stale"]:
            m.SKIPPED.labels(mod).inc(result.outcomes["stale"])
        for gate, n in result.gated_by.items():
            m.GATED.labels(mod, gate).inc(n)
        for size in result.batch_sizes:
            m.BATCH_SIZE.labels(mod).observe(size)
        if result.batch_sizes:
            m.INFERENCE_SECONDS.labels(mod).observe(result.inference_s)
            if result.decode_s:
                m.DECODE_SECONDS.labels(mod).observe(result.decode_s)
        if result.detections:
            m.DETECTIONS.labels(mod).inc(len(result.detections))

    # -- side tasks ----------------------------------------------------------------------

    async def _summaries(self) -> None:
        interval = self.config.summary_interval_s
        while True:
            await asyncio.sleep(interval)
            await self.flush_summaries()

    async def flush_summaries(self) -> bool:
        """Send the per-source summaries gathered since the last flush; False if Kafka failed
        (the counts are then put back, to go out with the next flush)."""
        book = self.pipeline.summaries
        async with self._summary_lock:  # a flush that returns True covers every count made before it
            summaries = book.flush()
            try:
                futures = []
                for s in summaries:
                    value, headers = encode_structured(s, source=self.source)
                    futures.append(await self.producer.send(self.detections_topic, value=value,
                                                            key=s.source.encode(), headers=headers))
                await asyncio.gather(*futures)
                m.SUMMARIES.labels(self.modality).inc(len(summaries))
                return True
            except KafkaError as exc:
                log.warning("score summaries not sent: %s", exc)
                book.restore(summaries)
                return False

    async def _on_announcement(self, ann: ModelAnnouncement) -> None:
        outcome = await self.reloader.apply(ann)
        m.MODEL_RELOADS.labels(self.modality, outcome.result).inc()
        if outcome.result == "loaded":
            self._publish_model_info()
        log.info("model announcement %s@%s: %s (%s)", ann.name, ann.version, outcome.result, outcome.reason,
                 extra=kv(event="model_announcement", result=outcome.result, model=ann.name, version=ann.version))

    def _publish_model_info(self) -> None:
        m.MODEL_INFO.clear()
        ref = self.slot.current.ref
        m.MODEL_INFO.labels(self.modality, ref.name, ref.version).set(1)

    # -- run -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        settings, cfg = self.settings, self.config
        HEALTH.require("model", "partitions")  # /readyz: model warmed up, group assignment received
        if cfg.create_topics:
            await ensure_topics(settings.kafka, settings.topics)
        self.producer = make_producer(settings.kafka)
        await self.producer.start()
        watcher = ModelsWatcher(settings.kafka, settings.topics.models, self.producer)
        tasks: list[asyncio.Task] = []
        try:
            await watcher.start()
            registry = ModelRegistry(cfg.registry_root, cfg.model_cache_dir)
            announced = await watcher.catch_up()
            detector = await asyncio.to_thread(self._load_initial, announced, registry)
            self.slot = ModelSlot(detector)
            self.reloader = Reloader(self.slot, cfg.detector, registry, cfg.max_batch, cfg.accept_model_names)
            self.pipeline = make_pipeline(cfg, self.slot)
            self._publish_model_info()
            HEALTH.set("model", True, f"{detector.ref.name}@{detector.ref.version} warmed up")
            log.info("%s processor serving %s", self.modality, detector.describe(),
                     extra=kv(event="serving", model=detector.ref.name, version=detector.ref.version,
                              providers=detector.session.providers, group=cfg.group_id, topic=self.input_topic))
            tasks.append(asyncio.create_task(watcher.follow(self._on_announcement), name="models-watcher"))
            tasks.append(asyncio.create_task(self._summaries(), name="score-summaries"))
            self._app = self._build_app()
            await self._app.start()
            await self._wait(stop, tasks)
        finally:
            self._stopping = True
            HEALTH.set("partitions", False, "stopping")
            # not wait_for: cancelling faust's stop would wait on the broker just the same
            done, _ = await asyncio.wait([asyncio.ensure_future(self._shutdown(tasks, watcher))],
                                         timeout=cfg.stop_grace_s)
            if done:
                done.pop().result()
            else:  # the broker is away: leave rather than hang on it
                log.critical("stop did not finish within %g s (Kafka unreachable?); exiting without committing: "
                             "%d batch(es) of outputs were not delivered, and inputs since the last commit are "
                             "read again after the restart (their detections keep their ids)",
                             cfg.stop_grace_s, cfg.max_inflight_batches - self._inflight._value)  # noqa: SLF001
                logging.shutdown()
                os._exit(EX_TEMPFAIL)

    async def _wait(self, stop: asyncio.Event, tasks: list[asyncio.Task]) -> None:
        """Until ``stop``; a crashed faust app or a dead side task ends the process with an
        error instead (crash-only: the orchestrator restarts it, uncommitted input is re-read)."""
        while not stop.is_set():
            if self._app._crashed.is_set():  # noqa: SLF001 - mode's Service keeps the flag there
                raise RuntimeError(f"the faust app crashed: {self._app.crash_reason!r}")
            for t in tasks:
                if t.done() and not t.cancelled() and t.exception() is not None:
                    raise RuntimeError(f"{t.get_name()} stopped: {t.exception()!r}") from t.exception()
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass

    async def _shutdown(self, tasks: Iterable[asyncio.Task], watcher: ModelsWatcher) -> None:
        app = self._app
        if app is not None:
            try:
                await self._drain_and_commit(app)
            except Exception:
                log.exception("final commit failed; uncommitted inputs will be read again (duplicates)")
            await app.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.slot is not None:
            await self.flush_summaries()
        await watcher.stop()
        await self.producer.stop()
        if getattr(self, "pipeline", None) is not None:
            await self.pipeline.close()
        if self._datadir:
            shutil.rmtree(self._datadir, ignore_errors=True)

    async def _drain_and_commit(self, app: faust.App, timeout_s: float = 15.0) -> None:
        """Stop fetching, let the batches in flight finish and be released, commit."""
        consumer = app.consumer
        assignment = consumer.assignment()
        if not assignment:
            return
        app.flow_control.suspend()
        consumer.pause_partitions(assignment)
        deadline = time.monotonic() + timeout_s
        # events already in take_events' buffer still come through as one more batch
        while time.monotonic() < deadline:
            last = self._last_batch
            if last is not None and not last.done():
                await asyncio.wait({last}, timeout=max(0.0, deadline - time.monotonic()))
                continue
            if not consumer._unacked_messages:  # noqa: SLF001 - faust has no public probe for this
                break
            await asyncio.sleep(0.05)
        await consumer.commit()


def _credentials(kafka):
    if kafka.security_protocol == "PLAINTEXT":
        return None
    if kafka.sasl_mechanism:
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
        return faust.SASLCredentials(username=kafka.sasl_username, password=password,
                                     mechanism=kafka.sasl_mechanism,
                                     ssl_context=_ssl_context() if kafka.security_protocol == "SASL_SSL" else None)
    return faust.SSLCredentials(_ssl_context())


def _ssl_context():
    import ssl

    return ssl.create_default_context()
