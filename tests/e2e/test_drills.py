"""Fault drills (issue 12): one incursion, one alert, whatever breaks.

Every drill runs the real services as the local deployment does (deploy/local/pipeline.py): a
file-fed camera and microphone (producers in this process), ``skysentry process vision`` /
``audio`` and ``skysentry alert run`` as subprocesses, the real broker and Redis, webhook, Slack
and Twilio stand-ins on loopback. The files are made here so the drone passes are known to the
frame: white frames and a loud tone during a pass, black frames and silence between, scored by
the toy models of detectors/testing.py (brightness, loudness) — the drills are about what the
pipeline and the alerting do under faults, not about a model's eye. One fault per drill, in the
last pass; a supervisor restarts a service that exits, as an orchestrator would.

Each drill asserts: every pass gives exactly one alert; each alert exactly one firing and one
resolved per channel (webhook, Slack, SMS, the ``alerts`` topic); no key or event id used by
two alerts; no event delivered (accepted) twice; the ``alerts`` topic in lifecycle order per
alert. Time to recover (fault over → outbox empty, the detections watermark current and both
sources reported on again) is measured and reported, not asserted beyond a generous limit.

The outcomes table in docs/drills.md comes from these runs: ``SKYSENTRY_WRITE_DRILLS=1`` makes
the last drill write it; otherwise a test checks that the page's counts are what this run got.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import signal
import time
import uuid
import wave
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis.asyncio as aioredis
import yaml
from aiokafka import TopicPartition

from alerting.ids import idempotency_key
from alerting.testing import RecordingReceiver
from deploy.local import cluster as local_cluster
from deploy.local import stack as local_stack
from deploy.local.pipeline import ROOT, TWILIO_TOKEN_ENV, WEBHOOK_SECRET_ENV, Watcher, group_ids, pipeline_config
from detectors.testing import toy_audio_model, toy_vision_model
from producers.camera import CameraProducer
from producers.microphone import MicrophoneProducer
from skysentry.bus import make_consumer, partition_for
from skysentry.config import Settings, TopicSettings
from skysentry.messages import Alert, decode_structured
from skysentry.service import ServiceProcess
from skysentry.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PASS_S, GAP_S, TAIL_S = 5.0, 7.0, 12.0  # a pass, the sky between passes, the sky after the last
FILE_FPS, RATE = 10, 16_000
SITE, CAMERA, MIC = "drill", "cam-1", "mic-1"
CHANNELS = ("webhook", "slack", "sms", "_alerts")
SMS_TO = "+15550199"
DOC = ROOT / "docs" / "drills.md"
RESULTS: dict[str, "Outcome"] = {}


# -- the sensor files ------------------------------------------------------------------------


def schedule(passes: int) -> list[tuple[float, float]]:
    """(start, end) of each pass, seconds from the start of the files."""
    return [(i * (PASS_S + GAP_S), i * (PASS_S + GAP_S) + PASS_S) for i in range(passes)]


def length_s(passes: int, tail: float = TAIL_S) -> float:
    return passes * PASS_S + (passes - 1) * GAP_S + tail


def write_camera(path: Path, passes: int, tail: float) -> Path:
    """An MJPG file: white frames during each pass, black otherwise."""
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FILE_FPS, (160, 120))
    windows = schedule(passes)
    for i in range(int(length_s(passes, tail) * FILE_FPS)):
        t = i / FILE_FPS
        level = 255 if any(a <= t < b for a, b in windows) else 0
        out.write(np.full((120, 160, 3), level, np.uint8))
    out.release()
    return path


def write_mic(path: Path, passes: int, tail: float) -> Path:
    """A 16 kHz WAV: a loud 440 Hz tone during each pass, silence otherwise."""
    n = int(length_s(passes, tail) * RATE)
    t = np.arange(n) / RATE
    on = np.zeros(n, bool)
    for a, b in schedule(passes):
        on |= (t >= a) & (t < b)
    pcm = (np.where(on, 0.3 * np.sin(2 * np.pi * 440 * t), 0.0) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    return path


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("drill-models")
    return {"vision": toy_vision_model(d / "vision.onnx", name="drill-vision", version="1"),
            "audio": toy_audio_model(d / "audio.onnx", name="drill-audio", version="1")}


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory):
    """A Kafka and a Redis of this module alone, for the drills that stop or kill them (the
    session's pair is shared with tests running in parallel)."""
    state = tmp_path_factory.mktemp("drill-stack")
    info = local_stack.up(state, kafka_port=0, redis_port=0, use_env=False)
    try:
        yield info
    finally:
        local_stack.down(state)


# -- one drill -------------------------------------------------------------------------------


@dataclass
class Outcome:
    fault: str
    passes: int
    alerts: int = 0
    firings: int = 0  # accepted firing deliveries, all channels
    resolves: int = 0
    duplicates: int = 0  # an accepted delivery, or an event on `alerts`, beyond the first of its key
    lost: int = 0  # an expected firing or resolved never accepted
    recover_s: float | None = None
    restarts: Counter = field(default_factory=Counter)  # unplanned exits the supervisor restarted
    problems: list[str] = field(default_factory=list)

    def row(self) -> str:
        recover = "—" if self.recover_s is None else f"{self.recover_s:.1f} s"
        return (f"| {self.fault} | {self.passes} | {self.alerts} | {self.firings} | {self.resolves} | "
                f"{self.duplicates} | {self.lost} | {recover} |")


@dataclass
class Drill:
    """What a fault needs: the services, the sensor clock, where the stack lives."""

    services: dict[str, ServiceProcess]
    receiver: RecordingReceiver
    state_dir: Path | None  # the own stack's, for faults on the broker or Redis
    topics: tuple[str, ...] = ()  # this run's topic names
    t0: float = 0.0  # wall time the sensor files started playing
    planned: set = field(default_factory=set)  # services being restarted on purpose

    async def until(self, seconds: float) -> None:
        """Sleep until ``seconds`` into the sensor files."""
        await asyncio.sleep(max(0.0, self.t0 + seconds - time.time()))

    def last_pass(self, passes: int) -> tuple[float, float]:
        return schedule(passes)[-1]

    async def kill_and_restart(self, key: str) -> None:
        self.planned.add(key)
        try:
            self.services[key].kill()  # SIGKILL
            self.services[key].start()
        finally:
            self.planned.discard(key)


async def supervise(drill: Drill, restarts: Counter, stop: asyncio.Event) -> None:
    while not stop.is_set():
        for key, svc in drill.services.items():
            if key not in drill.planned and svc.proc is not None and svc.proc.poll() is not None:
                restarts[key] += 1
                svc.start()
        await asyncio.sleep(0.2)


async def monitor(redis_url: str, prefix: str, watcher: Watcher, fault_over: asyncio.Future,
                  recovered: asyncio.Future) -> None:
    """Resolve ``recovered`` with the first time after the fault is over at which the outbox is
    empty, the watermark is current and both sources were reported on again."""
    after = await fault_over
    seen_then = Counter(watcher.seen.summaries)
    redis = aioredis.from_url(redis_url, decode_responses=True)
    try:
        while True:
            try:
                now_s, now_us = await redis.time()
                now_ms = int(now_s) * 1000 + int(now_us) // 1000
                depth = 0
                for ch in await redis.smembers(f"{prefix}:obch"):
                    depth += await redis.zcard(f"{prefix}:obq:{ch}")
                marks = [int(m) for m in await redis.hvals(f"{prefix}:wm")]
                current = bool(marks) and now_ms - min(marks) < 2000
                reported = all(watcher.seen.summaries[k] > seen_then[k] for k in (("vision", CAMERA), ("audio", MIC)))
                if depth == 0 and current and reported:
                    recovered.set_result(time.time() - after)
                    return
            except Exception:  # noqa: BLE001 - Redis itself may be the fault
                pass
            await asyncio.sleep(0.2)
    finally:
        await redis.aclose()


def drill_config(bootstrap: str, redis_url: str, receiver: RecordingReceiver, topics: TopicSettings, name: str,
                 toy: dict[str, Path], alerting: dict) -> dict:
    doc = pipeline_config(bootstrap, redis_url, receiver, topics=topics, name=name)
    for key in ("vision_processor", "audio_processor"):
        doc[key].update({"detector": {"model": str(toy[key.split("_")[0]])}, "session_timeout_s": 6.0,
                         "commit_interval_s": 0.3})
    a = doc["alerting"]
    a.update({
        "instance_id": f"{name}-alerting-1",  # static membership: a restart takes its partitions back at once
        "resolve_after": "2500ms", "stale_after": "3s", "corroboration": "5s", "max_detection_age": "60s",
        # one alert per pass whichever sensor confirms first: no escalation, every channel on the root
        "severity": {"vision": "warning", "audio": "warning", "corroborated": "warning"},
        "route": {"receivers": ["webhook", "slack", "sms"], "group_wait": "1s", "repeat_interval": "1h"},
        "shutdown_grace": "3s", "session_timeout_ms": 6000,
    })
    a["channels"]["sms"]["to"] = [SMS_TO]
    for ch in ("webhook", "slack", "sms"):
        a["channels"][ch].update({"backoff_initial": "250ms", "backoff_max": "2s", "max_attempts": 1000})
    a.update(alerting)
    return doc


async def run_drill(fault_name: str, kafka_bootstrap: str, redis_url: str, tmp: Path, toy: dict[str, Path], *,
                    passes: int = 2, fault=None, state_dir: Path | None = None, alerting: dict | None = None,
                    tail: float = TAIL_S, replication: int = 1, account: bool = True) -> tuple[Outcome, dict]:
    """``tail``: seconds of empty sky after the last pass; a fault must be over well before the
    files end, or the last alert is rightly left stale (its sensors stopped), not resolved.
    ``replication``: the topics' replication factor (3 on the cluster). ``account``: check that
    every input window was decided (:func:`decisions`); off when a processor is killed, since
    the heartbeat counts it held in memory die with it (its detections do not)."""
    uid = uuid.uuid4().hex[:8]
    name = f"drill-{uid}"
    topics = TopicSettings(frames=f"{name}.frames", audio=f"{name}.audio", detections=f"{name}.detections",
                           alerts=f"{name}.alerts", models=f"{name}.models", partitions=3,
                           replication_factor=replication)
    settings = Settings(kafka={"bootstrap_servers": kafka_bootstrap}, redis={"url": redis_url}, topics=topics,
                        camera={"source": str(write_camera(tmp / "sky.avi", passes, tail)), "camera_id": CAMERA,
                                "site": SITE},
                        mic={"source": str(write_mic(tmp / "sky.wav", passes, tail)), "mic_id": MIC, "site": SITE})
    await ensure_topics(settings.kafka, topics, groups=tuple(group_ids(name).values()))
    out = Outcome(fault_name, passes)
    with RecordingReceiver() as receiver:
        doc = drill_config(kafka_bootstrap, redis_url, receiver, topics, name, toy, alerting or {})
        prefix = doc["alerting"]["key_prefix"]
        config = tmp / "skysentry.yaml"
        config.write_text(yaml.safe_dump(doc, sort_keys=False))
        env = {k: v for k, v in os.environ.items()  # the config names the broker and Redis, not the session's env
               if not k.startswith("SKYSENTRY_") and k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
        env.update({WEBHOOK_SECRET_ENV: "drill-secret", TWILIO_TOKEN_ENV: "drill-token", "PYTHONUNBUFFERED": "1"})
        services = {key: ServiceProcess(key, args, config, env=env, log_path=tmp / f"{key}.log", cwd=ROOT)
                    for key, args in (("vision", ["stream_processors", "vision"]),
                                      ("audio", ["stream_processors", "audio"]), ("alerting", ["alerting", "run"]))}
        drill = Drill(services, receiver, state_dir, (topics.frames, topics.audio, topics.detections, topics.alerts))
        stop_supervisor = asyncio.Event()
        loop = asyncio.get_running_loop()
        fault_over, recovered = loop.create_future(), loop.create_future()
        tasks: list[asyncio.Task] = []
        try:
            async with Watcher(settings) as watcher:
                for svc in services.values():
                    svc.start()
                await asyncio.gather(*(svc.wait_assigned(timeout=120) for svc in services.values()))
                tasks.append(asyncio.create_task(supervise(drill, out.restarts, stop_supervisor)))
                tasks.append(asyncio.create_task(monitor(redis_url, prefix, watcher, fault_over, recovered)))
                producers = [CameraProducer(settings.camera, settings.kafka, topics),
                             MicrophoneProducer(settings.mic, settings.kafka, topics)]
                stop = asyncio.Event()
                drill.t0 = time.time()
                producing = [asyncio.create_task(p.run(stop)) for p in producers]
                if fault is not None:
                    await fault(drill, passes)
                    fault_over.set_result(time.time())
                await asyncio.wait_for(asyncio.gather(*producing), timeout=length_s(passes, tail) + 60)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not _settled(watcher.seen.alerts, passes):
                    await asyncio.sleep(0.25)
                await asyncio.sleep(1.5)  # the last notifications go out after the `alerts` event
                decided = await decisions(settings, name, watcher, producers) if account else []
                if fault is not None:
                    try:
                        out.recover_s = await asyncio.wait_for(asyncio.shield(recovered), 30)
                    except asyncio.TimeoutError:
                        out.problems.append("did not recover (outbox empty, watermark current, sources "
                                            "reported on) within 30 s of the end of the drill")
        finally:
            stop_supervisor.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            exits = {key: await asyncio.to_thread(svc.stop) for key, svc in services.items()}
        notifications = receiver.requests()
    events = await read_alerts(settings, topics.alerts)
    judge(out, prefix, events, notifications, drill.t0, passes)
    out.problems += decided
    for key, rc in exits.items():
        if rc not in (0, None):
            out.problems.append(f"{key} exited {rc} on SIGTERM")
    return out, {"events": events, "notifications": notifications, "exits": exits}


async def decisions(settings: Settings, name: str, watcher: Watcher, producers) -> list[str]:
    """Every input window got a decision: each processor group committed every record of its
    input topic, the sources' score summaries count at least as many scored (or skipped)
    windows as were published, and no input has two different detections. Returns problems."""
    from aiokafka.admin import AIOKafkaAdminClient

    from aiokafka.errors import KafkaError

    problems: list[str] = []
    groups = group_ids(name)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    consumer = make_consumer(settings.kafka, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        for modality, topic in (("vision", settings.topics.frames), ("audio", settings.topics.audio)):
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            deadline = time.monotonic() + 30  # the last commit is at most commit_interval_s behind
            behind: dict | str = "not read"
            while time.monotonic() < deadline:
                try:  # a node just restarted by the drill may not answer yet
                    ends = await consumer.end_offsets(parts)
                    committed = await admin.list_consumer_group_offsets(groups[modality])
                except KafkaError as exc:
                    behind = f"not read ({type(exc).__name__})"
                    await asyncio.sleep(1.0)
                    continue
                behind = {tp.partition: ends[tp] - (committed[tp].offset if tp in committed else 0)
                          for tp in parts if ends[tp] > (committed[tp].offset if tp in committed else 0)}
                if not behind:
                    break
                await asyncio.sleep(0.5)
            if behind:
                problems.append(f"{modality}: records never committed by its processors: {behind} (partition: n)")
    finally:
        await consumer.stop()
        await admin.close()
    # what reached the broker (a camera drops frames it could not deliver while the broker was away)
    published = {("vision", CAMERA): producers[0].publisher.stats.published,
                 ("audio", MIC): producers[1].publisher.stats.published}
    deadline = time.monotonic() + 10  # a summary goes out about once a second
    while time.monotonic() < deadline and any(watcher.seen.decided[k] < n for k, n in published.items()):
        await asyncio.sleep(0.25)
    for (modality, source), n in published.items():
        counted = watcher.seen.decided[(modality, source)]
        print(f"{modality}: {n} windows published, {counted} scored or skipped in summaries "
              f"({counted - n} decided again after a redelivery)")
        if counted < n:
            problems.append(f"{modality}: summaries count {counted} windows of {source}, {n} were published")
    per_input = Counter(d.input_event_id for d in watcher.seen.detections.values())
    twice = [ce for ce, k in per_input.items() if k > 1]
    if twice:
        problems.append(f"{len(twice)} input(s) with two different detections")
    return problems


def _settled(alerts: list[Alert], passes: int) -> bool:
    status: dict[str, str] = {}
    for a in alerts:
        status[a.alert_id or a.fingerprint] = a.event
    return len(status) >= passes and all(s == "resolved" for s in status.values())


async def read_alerts(settings: Settings, topic: str) -> list[tuple[str, Alert]]:
    """(ce_id, alert event) of every record on ``topic``, in partition order."""
    consumer = make_consumer(settings.kafka, group_id=None)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.topics.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out: list[tuple[str, Alert]] = []
        while any([await consumer.position(tp) < ends[tp] for tp in parts]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    envelope, alert = decode_structured(r.value, Alert)
                    out.append((envelope.id, alert))
        return out
    finally:
        await consumer.stop()


def judge(out: Outcome, prefix: str, events: list[tuple[str, Alert]], notifications, t0: float, passes: int) -> None:
    """Fill ``out`` from what reached the `alerts` topic and the receivers; ``problems`` says
    what broke a rule."""
    by_alert: dict[str, list[str]] = defaultdict(list)
    ce_ids = Counter(ce for ce, _ in events)
    ce_alerts: dict[str, set] = defaultdict(set)
    for ce, a in events:
        by_alert[a.alert_id].append(a.event)
        ce_alerts[ce].add(a.alert_id)
    out.alerts = len(by_alert)
    starts = {a.alert_id: a.starts_at.timestamp() - t0 for _, a in events if a.event == "firing"}
    per_pass = Counter()
    for alert_id, start in starts.items():
        hit = [i for i, (a, b) in enumerate(schedule(passes)) if a - 1.0 <= start <= b + 1.0]
        if not hit:
            out.problems.append(f"alert {alert_id} started at {start:.1f} s, in no pass")
        per_pass.update(hit)
    for i in range(passes):
        if per_pass[i] != 1:
            out.problems.append(f"pass {i + 1} gave {per_pass[i]} alerts")
    for alert_id, seq in by_alert.items():
        if not (seq and seq[0] == "firing" and seq[-1] == "resolved" and all(e == "repeat" for e in seq[1:-1])):
            out.problems.append(f"alert {alert_id} on `alerts` out of lifecycle order: {seq}")
    reused = [ce for ce, ids in ce_alerts.items() if len(ids) > 1]
    if reused:
        out.problems.append(f"event ids used by two alerts: {reused}")

    # every expected (alert, channel, event) key, accepted exactly once
    accepted = Counter(r.headers.get("idempotency-key") for r in notifications if r.status < 300)
    key_alerts: dict[str, set] = defaultdict(set)
    for r in notifications:
        if r.path.startswith("/webhook"):
            body = r.json()
            key_alerts[body["idempotency_key"]].add(body["alert"]["alert_id"])
    reused = [k for k, ids in key_alerts.items() if len(ids) > 1]
    if reused:
        out.problems.append(f"idempotency keys used by two alerts: {reused}")
    expected = set()
    for alert_id in by_alert:
        for channel in CHANNELS:
            target = SMS_TO if channel == "sms" else None
            route = "" if channel == "_alerts" else "root"
            for seq, event in ((1, "firing"), (2, "resolved")):
                key = idempotency_key(prefix, alert_id, route, event, seq, channel, target)
                expected.add(key)
                got = ce_ids[key] if channel == "_alerts" else accepted[key]
                if got == 0:
                    out.lost += 1
                    out.problems.append(f"{event} of alert {alert_id} never reached {channel}")
                    continue
                if event == "firing":
                    out.firings += 1
                else:
                    out.resolves += 1
                out.duplicates += got - 1
    unexpected = [k for k in accepted if k not in expected] + [k for k in ce_ids if k not in expected]
    if unexpected:
        out.problems.append(f"{len(unexpected)} notification(s) or events beyond one firing and one resolved "
                            "per alert and channel")
    if out.duplicates:
        out.problems.append(f"{out.duplicates} event(s) delivered twice")


def check(out: Outcome) -> None:
    RESULTS[out.fault] = out
    print(f"\ndrill {out.fault}: {out.row()} restarts {dict(out.restarts)}")
    assert out.problems == [], out.problems
    assert out.alerts == out.passes
    assert out.firings == out.resolves == out.passes * len(CHANNELS)
    assert out.duplicates == 0 and out.lost == 0


# -- the drills ------------------------------------------------------------------------------


async def test_baseline(stack, toy, tmp_path):
    out, _ = await run_drill("none (baseline)", stack.bootstrap_servers, stack.redis_url, tmp_path, toy)
    check(out)


async def _kill_9_processor_mid_pass(stack, toy, tmp_path, modality: str) -> None:
    async def fault(drill: Drill, passes: int) -> None:
        start, _ = drill.last_pass(passes)
        await drill.until(start + 2.0)  # the alert has fired (3 of 5 frames or windows)
        await drill.kill_and_restart(modality)

    out, _ = await run_drill(f"kill -9 {modality} processor mid-pass", stack.bootstrap_servers, stack.redis_url,
                             tmp_path, toy, fault=fault, account=False)
    check(out)


async def test_kill_9_vision_processor_mid_pass(stack, toy, tmp_path):
    await _kill_9_processor_mid_pass(stack, toy, tmp_path, "vision")


async def test_kill_9_audio_processor_mid_pass(stack, toy, tmp_path):
    await _kill_9_processor_mid_pass(stack, toy, tmp_path, "audio")


async def test_kill_9_alerting_mid_pass(stack, toy, tmp_path):
    async def fault(drill: Drill, passes: int) -> None:
        start, _ = drill.last_pass(passes)
        await drill.until(start + 1.0)  # confirmed, inside group_wait: the firing is decided or in flight
        await drill.kill_and_restart("alerting")

    out, _ = await run_drill("kill -9 alerting mid-pass", stack.bootstrap_servers, stack.redis_url, tmp_path, toy,
                             fault=fault)
    check(out)


async def test_broker_stop_and_start(own_stack, toy, tmp_path):
    # this process's own clients (camera, microphone, watcher) would print every failed connect
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    async def fault(drill: Drill, passes: int) -> None:
        start, _ = drill.last_pass(passes)
        await drill.until(start + 2.0)
        await asyncio.to_thread(local_stack.stop_kafka, drill.state_dir)
        await asyncio.sleep(5.0)
        await asyncio.to_thread(local_stack.start_kafka, drill.state_dir)

    # stopping and starting the broker take seconds of their own: a longer tail of sky after the pass
    out, _ = await run_drill("broker stop, 5 s, start", own_stack.bootstrap_servers, own_stack.redis_url, tmp_path,
                             toy, fault=fault, state_dir=own_stack.state_dir, tail=30.0)
    check(out)


async def test_broker_frozen_for_20_s(own_stack, toy, tmp_path):
    """SIGSTOP: the broker's process is there and its port open, but nothing answers (a long GC
    pause, a VM stall) — longer than the processors' session timeout, so their groups rebalance."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    async def fault(drill: Drill, passes: int) -> None:
        start, _ = drill.last_pass(passes)
        await drill.until(start + 2.0)
        pid = json.loads((drill.state_dir / "stack.json").read_text())["kafka"]["pid"]
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(20.0)
        finally:
            os.kill(pid, signal.SIGCONT)

    out, _ = await run_drill("broker frozen (SIGSTOP) for 20 s", own_stack.bootstrap_servers, own_stack.redis_url,
                             tmp_path, toy, fault=fault, state_dir=own_stack.state_dir, tail=40.0)
    check(out)


async def test_redis_kill_9_with_the_stacks_settings(own_stack, toy, tmp_path):
    async def fault(drill: Drill, passes: int) -> None:
        start, _ = drill.last_pass(passes)
        await drill.until(start + 2.0)
        pid = json.loads((drill.state_dir / "stack.json").read_text())["redis"]["pid"]
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(local_stack.start_redis, drill.state_dir)  # same port, its append-only file

    out, _ = await run_drill("Redis kill -9 (appendonly, always)", own_stack.bootstrap_servers,
                             own_stack.redis_url, tmp_path, toy, fault=fault, state_dir=own_stack.state_dir)
    check(out)


async def test_redis_data_loss(own_stack, toy, tmp_path):
    async def fault(drill: Drill, passes: int) -> None:
        start, _ = drill.last_pass(passes)
        await drill.until(start + 3.0)  # the firing has been delivered
        pid = json.loads((drill.state_dir / "stack.json").read_text())["redis"]["pid"]
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.5)
        shutil.rmtree(drill.state_dir / "appendonlydir")  # everything Redis knew is gone
        await asyncio.to_thread(local_stack.start_redis, drill.state_dir)

    out, _ = await run_drill("Redis data loss (kill -9, files removed)", own_stack.bootstrap_servers,
                             own_stack.redis_url, tmp_path, toy, fault=fault, state_dir=own_stack.state_dir)
    check(out)


async def test_every_service_stops_within_its_grace_with_the_broker_down(own_stack, toy, tmp_path):
    """SIGTERM while Kafka is down: the processors used to hang for minutes on faust's stop and
    the producer's flush. Each service must exit within its grace (a few seconds over) and say
    so: alerting with what stayed in its outbox, a processor with status 75 (nothing committed,
    its inputs are read again; their detections keep their ids) or 0."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    name = f"drill-{uuid.uuid4().hex[:8]}"
    topics = TopicSettings(frames=f"{name}.frames", audio=f"{name}.audio", detections=f"{name}.detections",
                           alerts=f"{name}.alerts", models=f"{name}.models", partitions=3)
    kafka = {"bootstrap_servers": own_stack.bootstrap_servers}
    await ensure_topics(Settings(kafka=kafka).kafka, topics, groups=tuple(group_ids(name).values()))
    grace = {"vision": 5.0, "audio": 5.0, "alerting": 3.0}
    with RecordingReceiver() as receiver:
        doc = drill_config(own_stack.bootstrap_servers, own_stack.redis_url, receiver, topics, name, toy, {})
        for key in ("vision_processor", "audio_processor"):
            doc[key]["stop_grace_s"] = grace[key.split("_")[0]]
        config = tmp_path / "skysentry.yaml"
        config.write_text(yaml.safe_dump(doc, sort_keys=False))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SKYSENTRY_") and k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
        env.update({WEBHOOK_SECRET_ENV: "drill-secret", TWILIO_TOKEN_ENV: "drill-token"})
        services = {key: ServiceProcess(key, args, config, env=env, log_path=tmp_path / f"{key}.log", cwd=ROOT)
                    for key, args in (("vision", ["stream_processors", "vision"]),
                                      ("audio", ["stream_processors", "audio"]), ("alerting", ["alerting", "run"]))}
        try:
            for svc in services.values():
                svc.start()
            await asyncio.gather(*(svc.wait_assigned(timeout=120) for svc in services.values()))
            settings = Settings(kafka=kafka, topics=topics,
                                camera={"source": str(write_camera(tmp_path / "sky.avi", 1, 2.0)), "camera_id": CAMERA,
                                        "site": SITE},
                                mic={"source": str(write_mic(tmp_path / "sky.wav", 1, 2.0)), "mic_id": MIC, "site": SITE})
            stop = asyncio.Event()
            producers = [CameraProducer(settings.camera, settings.kafka, topics),
                         MicrophoneProducer(settings.mic, settings.kafka, topics)]
            playing = [asyncio.create_task(p.run(stop)) for p in producers]
            await asyncio.sleep(PASS_S)  # a drone in the sky, an alert firing
            await asyncio.to_thread(local_stack.stop_kafka, own_stack.state_dir)
            stop.set()
            await asyncio.wait(playing, timeout=30)
            took = {}
            for key, svc in services.items():
                svc.proc.send_signal(signal.SIGTERM)
            t0 = time.monotonic()

            async def exited(key: str, svc: ServiceProcess) -> None:
                await asyncio.to_thread(svc.proc.wait, 60)
                took[key] = time.monotonic() - t0

            await asyncio.gather(*(exited(key, svc) for key, svc in services.items()))
        finally:
            for svc in services.values():
                if svc.proc is not None and svc.proc.poll() is None:
                    svc.proc.kill()
            await asyncio.to_thread(local_stack.start_kafka, own_stack.state_dir)  # as the module found it
    rcs = {key: svc.proc.returncode for key, svc in services.items()}
    print(f"\nSIGTERM with the broker down: exit {rcs} after {({k: round(v, 1) for k, v in took.items()})} s "
          f"(grace {grace})")
    for key, svc in services.items():
        assert took[key] < grace[key] + 4.0, f"{key} took {took[key]:.1f} s to exit (grace {grace[key]:g} s)"
        said = " ".join(str(line.get("msg", "")) for line in svc.lines[-5:])
        if key == "alerting":
            assert rcs[key] == 0 and "alerting stopped" in said, svc.tail()
        else:
            assert rcs[key] in (0, 75), svc.tail()
            assert rcs[key] == 0 or "were not delivered" in said, svc.tail()


async def test_webhook_answers_500_for_a_while(stack, toy, tmp_path):
    async def fault(drill: Drill, passes: int) -> None:
        start, _ = drill.last_pass(passes)
        await drill.until(start - 1.0)
        drill.receiver.respond("/webhook", [500])
        await drill.until(start + PASS_S + 4.0)  # the firing and the resolve both meet it
        drill.receiver.respond("/webhook", [200])

    out, _ = await run_drill("webhook 500 for 10 s", stack.bootstrap_servers, stack.redis_url, tmp_path, toy,
                             fault=fault)
    check(out)


async def test_short_alert_retention_across_passes(stack, toy, tmp_path):
    out, _ = await run_drill("alert_retention 2 s, 3 passes", stack.bootstrap_servers, stack.redis_url, tmp_path,
                             toy, passes=3, alerting={"alert_retention": "2s"})
    check(out)


# -- on a three-node Kafka cluster (issue 16) --------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Three KRaft nodes and a Redis of this module alone (topics: replication factor 3,
    min.insync.replicas 2); a drill that leaves a node down gets it back before the next."""
    state = tmp_path_factory.mktemp("drill-cluster")
    info = local_stack.up(state, redis_port=0, use_env=False, brokers=3)
    try:
        yield info
    finally:
        local_stack.down(state)


def test_cluster_status_names_each_node_and_refuses_a_different_size(cluster):
    st = local_stack.status(cluster.state_dir, use_env=False)
    assert [n.name for n in st.nodes] == ["kafka-1", "kafka-2", "kafka-3"] and all(n.running for n in st.nodes)
    assert st.kafka.running and st.kafka.address == cluster.bootstrap_servers == ",".join(n.address for n in st.nodes)
    local_cluster.stop_node(cluster.state_dir, 3, kill=True)
    try:
        st = local_stack.status(cluster.state_dir, use_env=False)
        assert not st.kafka.running and [n.running for n in st.nodes] == [True, True, False]
    finally:
        local_cluster.start_node(cluster.state_dir, 3)
    assert local_stack.status(cluster.state_dir, use_env=False).running
    with pytest.raises(local_stack.StackError, match="cluster of 3 nodes, not 5"):
        local_stack.up(cluster.state_dir, use_env=False, brokers=5)


def _restore(state: Path) -> None:
    for node in (1, 2, 3):
        local_cluster.start_node(state, node)


async def _leader_of(bootstrap: str, topic: str, key: str) -> int:
    """The node leading the partition that ``key``'s records go to (the producers' murmur2)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = {p["partition"]: p["leader"] for p in described["partitions"]}
    return partitions[partition_for(key.encode(), len(partitions))]


async def _cluster_drill(cluster, toy, tmp_path, fault_name: str, fault, tail: float) -> None:
    """A drill on the three-node cluster (replication 3): the cluster is put back as it was
    (every node up) whatever happens, then the run is checked."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        out, _ = await run_drill(fault_name, cluster.bootstrap_servers, cluster.redis_url, tmp_path, toy, fault=fault,
                                 state_dir=cluster.state_dir, replication=3, tail=tail)
    finally:
        _restore(cluster.state_dir)
    check(out)


async def test_cluster_kill_9_the_leader_of_the_cameras_partition(cluster, toy, tmp_path):
    async def fault(drill: Drill, passes: int) -> None:
        start, _ = drill.last_pass(passes)
        await drill.until(start + 2.0)  # mid-pass, frames and windows flowing
        frames = next(t for t in drill.topics if t.endswith(".frames"))
        leader = await _leader_of(cluster.bootstrap_servers, frames, CAMERA)
        await asyncio.to_thread(local_cluster.stop_node, cluster.state_dir, leader, kill=True)
        await asyncio.sleep(5.0)
        await asyncio.to_thread(local_cluster.start_node, cluster.state_dir, leader)

    await _cluster_drill(cluster, toy, tmp_path, "cluster: kill -9 the camera partition's leader, 5 s", fault, 25.0)


async def test_cluster_rolling_restart_of_all_three_nodes(cluster, toy, tmp_path):
    async def fault(drill: Drill, passes: int) -> None:
        start, _ = drill.last_pass(passes)
        await drill.until(start + 1.0)
        for node in (1, 2, 3):  # as an operator upgrades: one at a time, each back before the next
            await asyncio.to_thread(local_cluster.stop_node, drill.state_dir, node)
            await asyncio.to_thread(local_cluster.start_node, drill.state_dir, node)

    await _cluster_drill(cluster, toy, tmp_path, "cluster: rolling restart of the 3 nodes", fault, 40.0)


async def test_cluster_one_node_stays_down(cluster, toy, tmp_path):
    async def fault(drill: Drill, passes: int) -> None:
        start, _ = drill.last_pass(passes)
        # mid-pass, and down for the rest of the drill. (Killed in the gap before the pass, it
        # silenced the sensors' reports just as the first pass's alert was due to resolve; the
        # alerting rightly held it open, and the next pass joined it as one alert.)
        await drill.until(start + 1.0)
        await asyncio.to_thread(local_cluster.stop_node, drill.state_dir, 2, kill=True)

    await _cluster_drill(cluster, toy, tmp_path, "cluster: one node down for good", fault, 30.0)


# -- the outcomes table ----------------------------------------------------------------------

TABLE_HEAD = ("| fault | passes | alerts | firings | resolves | duplicates | lost | time to recover |\n"
              "|---|---|---|---|---|---|---|---|")


def test_the_outcomes_table_in_docs_is_this_runs():
    """Runs after the drills (file order). With SKYSENTRY_WRITE_DRILLS=1 it writes the table
    from this run; otherwise it checks the page's counts against this run's."""
    if len(RESULTS) < 13:
        pytest.skip("needs every drill of this module in this run")
    failed = [o.fault for o in RESULTS.values() if o.problems]
    if failed:
        pytest.skip(f"drills failed in this run ({', '.join(failed)}): the table stays as it is")
    rows = [o.row() for o in RESULTS.values()]
    if os.environ.get("SKYSENTRY_WRITE_DRILLS") == "1":
        text = DOC.read_text()
        start, end = text.index("<!-- drills:begin -->"), text.index("<!-- drills:end -->")
        load = os.getloadavg()[0]
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        note = (f"\nTimes from the run of {when} on a {os.cpu_count()}-core machine (load average {load:.1f} as the "
                "table was written).\n")
        DOC.write_text(text[:start] + "<!-- drills:begin -->\n" + TABLE_HEAD + "\n" + "\n".join(rows) + "\n"
                       + note + text[end:])
        return
    page = {cells[0]: cells[1:7] for cells in _table(DOC.read_text())}
    for o in RESULTS.values():
        cells = _cells(o.row())
        assert page.get(cells[0]) == cells[1:7], f"docs/drills.md disagrees with this run for {o.fault}: {o.row()}"


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def _table(text: str) -> list[list[str]]:
    body = text[text.index("<!-- drills:begin -->"):text.index("<!-- drills:end -->")]
    return [_cells(line) for line in body.splitlines() if re.match(r"\|\s*[^-|\s]", line) and "fault |" not in line]
