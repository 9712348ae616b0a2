"""The whole pipeline on one machine, as it is deployed: every service its own process.

    camera + microphone producers ─▶ sensor.frames / sensor.audio
        ─▶ `skysentry process vision` / `skysentry process audio` (the shipped models)
        ─▶ detections ─▶ `skysentry alert run` ─▶ alerts + webhook, Slack, SMS

The producers run in this process; the processors and alerting run as subprocesses from one
generated config file, exactly as an operator would start them. Slack, Twilio and the webhook
receiver are stood in for by a real HTTP server on loopback (:class:`RecordingReceiver`).
A :class:`Watcher` reads every topic so the run can be shown and checked: each alert's
lineage (alert → detection ids → input event ids) and the end-to-end latency.

Beside the synthetic sources, a run can stream real field clips (``samples/``: a drone and a
bird filmed outdoors), each as its own camera at the camera's default 5 fps, looping; the
:meth:`RunReport.field_report` says per clip what was sent, seen and alerted.

With ``console_port``, the run also starts ``skysentry console`` on 127.0.0.1 (the operator's
page: live wall, alerts with their evidence, silences, health) from the same config, with the
evidence links signed by a secret of the run and pointing at it; :func:`start_console` is the
same start for the console's browser tests.

Used by ``make demo`` (:mod:`deploy.local.demo`), ``tests/e2e`` and ``tests/browser``.
"""

from __future__ import annotations

import asyncio
import csv
import os
import secrets
import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml
from aiokafka import TopicPartition

from alerting.channels.webhook import verify_signature
from alerting.testing import Received, RecordingReceiver
from deploy.local.latency import Breakdown, Notified, Times, breakdown, notify_breakdown, percentile  # noqa: F401
from producers.camera import CameraProducer
from producers.microphone import MicrophoneProducer
from skysentry.bus import make_consumer
from skysentry.config import CameraSettings, Settings, TopicSettings
from skysentry.messages import Alert, ContractError, Detection, ScoreSummary, decode_structured, header
from skysentry.service import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
FIELD_SITE = "field"  # its own site: a field clip is never corroborated by, or muted with, the synthetic mic
WEBHOOK_SECRET_ENV = "SKYSENTRY_ALERTING__CHANNELS__WEBHOOK__SECRET"
TWILIO_TOKEN_ENV = "SKYSENTRY_ALERTING__CHANNELS__SMS__AUTH_TOKEN"
EVIDENCE_SECRET_ENV = "SKYSENTRY_EVIDENCE__SECRET"  # signs the evidence links (alerting) and checks them (console)
CONSOLE_TOKEN_ENV = "SKYSENTRY_CONSOLE__TOKEN"  # the console's login beyond loopback
CONSOLE_PORT = 8090  # the console's default port (console.port)


# -- configuration ---------------------------------------------------------------------------


def group_ids(name: str = "demo") -> dict[str, str]:
    """The consumer group of each service of a run called ``name``."""
    return {svc: f"{name}-{svc}" for svc in ("vision", "audio", "alerting")}


def pipeline_config(bootstrap: str, redis_url: str, receiver: RecordingReceiver, *,
                    topics: TopicSettings | None = None, name: str = "demo") -> dict[str, Any]:
    """One config document for both processors and alerting. Secrets are not in it: they
    reach the alerting process through its environment (see :meth:`Pipeline.start`)."""
    topics = topics or TopicSettings()
    groups = group_ids(name)
    return {
        "kafka": {"bootstrap_servers": bootstrap},
        "redis": {"url": redis_url},
        "topics": topics.model_dump(mode="json"),
        "metrics": {"enabled": False},
        "log": {"level": "INFO", "json": True},
        "vision_processor": {"group_id": groups["vision"], "commit_interval_s": 0.5, "summary_interval_s": 1.0},
        "audio_processor": {"group_id": groups["audio"], "commit_interval_s": 0.5, "summary_interval_s": 1.0},
        "alerting": {
            "group_id": groups["alerting"],
            "key_prefix": f"skysentry:{name}",
            "confirm": {"threshold": 0.6, "k": 3, "n": 5, "horizon": "10s"},
            "resolve_after": "6s",
            # The run's streams end after `seconds`: sensor data that stops leaves an alert stale,
            # not resolved (alerting's "silence is not absence"); this run shows the resolve instead.
            "stale_after": "0s",
            "max_detection_age": "30s",
            "route": {
                "receivers": ["webhook", "slack"], "group_wait": "1s", "repeat_interval": "1h",
                "routes": [{"name": "critical-sms", "match": {"severity": "critical"},
                            "receivers": ["sms", "webhook", "slack"], "group_wait": "0s"}],
            },
            "channels": {
                "webhook": {"type": "webhook", "url": receiver.url("/webhook"), "timeout": "3s"},
                "slack": {"type": "slack", "url": receiver.url("/slack"), "timeout": "3s"},
                "sms": {"type": "twilio", "base_url": receiver.url("/twilio"), "account_sid": "ACdemo",
                        "auth_token": "set-from-environment", "from": "+15550100", "to": ["+15550199"],
                        "timeout": "3s"},
            },
            "outbox": {"lease": "10s", "poll": "100ms"},
            "tick_poll": "100ms",
        },
    }


# -- real field clips ------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldClip:
    """A real clip streamed as its own camera (its own alert fingerprint)."""

    camera_id: str
    path: Path
    truth: str  # the class filmed: drone, bird, airplane, helicopter
    distance: str = ""  # the dataset's distance bin: close, medium, distant

    def camera(self, site: str = FIELD_SITE) -> CameraSettings:
        """The camera's defaults (5 fps, taken from the 30 fps file played in real time), looping."""
        return CameraSettings(source=str(self.path), camera_id=self.camera_id, site=site, loop=True)


def sample_clips(folder: Path = SAMPLES) -> list[FieldClip]:
    """The clips in ``samples/`` (their ``files.csv``), one camera each: ``field-<class>``."""
    with open(folder / "files.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [FieldClip(f"field-{row['class']}", folder / Path(row["file"]).name, row["class"],
                      row.get("distance_bin", "")) for row in sorted(rows, key=lambda r: r["class"] != "drone")]


@dataclass
class FieldResult:
    """What became of one field clip in a run."""

    clip: FieldClip
    frames_sent: int
    frames_seen: int  # on sensor.frames
    summaries: int  # the vision processor's score summaries for this camera
    detections: Counter  # label → detections
    alerted: bool  # a firing alert of this camera, label drone
    alert_labels: tuple[str, ...]  # labels of every alert of this camera (only drone, unless configured)
    max_drone_score: float | None

    @property
    def drone_detections(self) -> int:
        return self.detections.get("drone", 0)

    @property
    def other_labels(self) -> dict[str, int]:
        return {label: n for label, n in sorted(self.detections.items()) if label != "drone"}

    @property
    def as_expected(self) -> bool:
        """A drone clip alerts; any other does not."""
        return self.alerted == (self.clip.truth == "drone")


# -- watching the topics ---------------------------------------------------------------------


@dataclass
class Observed:
    """What flowed through the topics during a run, and the notifications received."""

    inputs: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # ce_id → (topic, capture time)
    detections: dict[str, Detection] = field(default_factory=dict)
    detection_read_at: dict[str, datetime] = field(default_factory=dict)
    input_logged_at: dict[str, datetime] = field(default_factory=dict)  # ce_id → the record's Kafka timestamp
    detection_logged_at: dict[str, datetime] = field(default_factory=dict)  # detection id → its record's timestamp
    window_s: dict[str, float] = field(default_factory=dict)  # audio ce_id → the window's length
    summaries: Counter = field(default_factory=Counter)  # (modality, source) → heartbeats
    decided: Counter = field(default_factory=Counter)  # (modality, source) → windows the summaries scored or skipped
    alerts: list[Alert] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    inputs_by_source: Counter = field(default_factory=Counter)  # camera / microphone id → records
    invalid: Counter = field(default_factory=Counter)

    def clip_result(self, clip: FieldClip, frames_sent: int = 0) -> FieldResult:
        """What has become of one field clip so far: frames, detections by label, whether a drone
        alert fired (the demo's live view and the final report both read this)."""
        dets = [d for d in self.detections.values() if d.source == clip.camera_id]
        alerts = [a for a in self.alerts if a.source == clip.camera_id]
        drone = [d.score for d in dets if d.label == "drone"]
        return FieldResult(
            clip=clip, frames_sent=frames_sent, frames_seen=self.inputs_by_source[clip.camera_id],
            summaries=self.summaries[("vision", clip.camera_id)], detections=Counter(d.label for d in dets),
            alerted=any(a.event == "firing" and a.label == "drone" for a in alerts),
            alert_labels=tuple(sorted({a.label for a in alerts})), max_drone_score=max(drone) if drone else None)

    def modality_count(self, modality: str) -> int:
        return sum(1 for d in self.detections.values() if d.modality == modality)


class Watcher:
    """Reads the input, detections and alerts topics from their current end."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        t = settings.topics
        self.topics = {t.frames: "frame", t.audio: "audio", t.detections: "detection", t.alerts: "alert"}
        self.seen = Observed()
        self._consumer = None
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "Watcher":
        self._consumer = make_consumer(self.settings.kafka, group_id=None, metadata_max_age_ms=1000)
        await self._consumer.start()
        parts = []
        for topic in self.topics:
            for p in self._consumer.partitions_for_topic(topic) or await self._partitions(topic):
                parts.append(TopicPartition(topic, p))
        self._consumer.assign(parts)
        await self._consumer.seek_to_end(*parts)
        for tp in parts:  # resolve the end offsets now, before anything is produced
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._run())
        return self

    async def _partitions(self, topic: str) -> set[int]:
        for _ in range(50):
            await self._consumer._client.force_metadata_update()  # noqa: SLF001 (no public refresh)
            if found := self._consumer.partitions_for_topic(topic):
                return found
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topic {topic} has no partitions; create the topics first")

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            now = datetime.now(timezone.utc)
            for tp, records in batches.items():
                kind = self.topics[tp.topic]
                for r in records:
                    self._take(kind, tp.topic, r, now)

    def _take(self, kind: str, topic: str, record, now: datetime) -> None:
        s = self.seen
        if kind in ("frame", "audio"):
            s.counts[kind] += 1
            s.inputs_by_source[record.key.decode(errors="replace") if record.key else "?"] += 1
            ce_id, ce_time = header(record.headers, "ce_id"), header(record.headers, "ce_time")
            if ce_id and ce_time:
                s.inputs[ce_id] = (topic, datetime.fromisoformat(ce_time))
                if (logged := _record_time(record)) is not None:
                    s.input_logged_at[ce_id] = logged
                samples, rate = header(record.headers, "ce_samples"), header(record.headers, "ce_samplerate")
                if kind == "audio" and samples and rate and samples.isdigit() and rate.isdigit() and int(rate):
                    s.window_s[ce_id] = int(samples) / int(rate)
            return
        try:
            _, msg = decode_structured(record.value, (Detection, ScoreSummary) if kind == "detection" else Alert)
        except ContractError:
            s.invalid[kind] += 1
            return
        if isinstance(msg, Detection):
            s.detections[msg.id] = msg
            s.detection_read_at.setdefault(msg.id, now)
            if (logged := _record_time(record)) is not None:
                s.detection_logged_at.setdefault(msg.id, logged)
        elif isinstance(msg, ScoreSummary):
            s.summaries[(msg.modality, msg.source)] += 1
            s.decided[(msg.modality, msg.source)] += msg.windows + msg.skipped
        else:
            s.alerts.append(msg)


def _record_time(record) -> datetime | None:
    """A consumed record's Kafka timestamp (ms; CreateTime unless the topic says LogAppendTime)."""
    ts = getattr(record, "timestamp", None)
    return datetime.fromtimestamp(ts / 1000, timezone.utc) if isinstance(ts, int) and ts > 0 else None


# -- the console -----------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1", preferred: int | None = None) -> int:
    """``preferred`` when nothing listens on it at ``host``, else a port the system calls free."""
    for port in ((preferred,) if preferred else ()) + (0,):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError(f"no free port on {host}")


def with_metrics(env: dict[str, str], port: int | None) -> dict[str, str]:
    """A service's environment with its /metrics, /livez and /readyz on ``port`` (None: as it is)."""
    if port is None:
        return env
    return {**env, "SKYSENTRY_METRICS__ENABLED": "true", "SKYSENTRY_METRICS__PORT": str(port)}


def start_console(config: Path, *, host: str = "127.0.0.1", port: int, env: dict[str, str],
                  log_path: Path | None = None, timeout_s: float = 60.0) -> ServiceProcess:
    """``python -m console --host H --port P --config FILE`` (the same as ``skysentry console``)
    as a child process, returned once it answers HTTP; raises with its log when it exits or
    does not answer within ``timeout_s``."""
    svc = ServiceProcess("console", ["console", "--host", host, "--port", str(port)], config, env=env,
                         log_path=log_path, cwd=ROOT).start()
    url = f"http://{host}:{port}/healthz"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return svc
        except urllib.error.HTTPError:
            return svc  # it answers (beyond loopback /healthz may ask for credentials)
        except OSError:
            pass
        if svc.proc.poll() is not None:
            raise RuntimeError(f"console exited with status {svc.proc.returncode}:\n{svc.tail(30)}")
        if time.monotonic() > deadline:
            svc.stop()
            raise TimeoutError(f"console: no answer at {url} within {timeout_s:.0f}s:\n{svc.tail()}")
        time.sleep(0.2)


# -- the run ---------------------------------------------------------------------------------


@dataclass
class RunReport:
    observed: Observed
    notifications: list[Received]
    webhook_secret: str
    log_dir: Path  # the services' logs: <name>.log
    producers: dict[str, dict[str, int]]  # "camera", "microphone" (synthetic), and each field clip's camera id
    services: dict[str, int | None]  # exit status of each service
    service_errors: dict[str, list[dict]]
    field_clips: tuple[FieldClip, ...] = ()

    def field_report(self) -> list[FieldResult]:
        """Per field clip: frames sent and seen, detections by label, and whether it alerted."""
        return [self.observed.clip_result(clip, self.producers.get(clip.camera_id, {}).get("published", 0))
                for clip in self.field_clips]

    def notifications_on(self, path: str) -> list[Received]:
        return [r for r in self.notifications if r.path.startswith(path)]

    def webhook_payloads(self) -> list[dict]:
        return [r.json() for r in self.notifications_on("/webhook")]

    def unsigned_webhooks(self) -> list[Received]:
        return [r for r in self.notifications_on("/webhook")
                if not verify_signature(self.webhook_secret, r.headers.get("x-skysentry-timestamp"), r.body,
                                        r.headers.get("x-skysentry-signature"))]

    def lineage_problems(self) -> list[str]:
        """Every alert's detection ids were published, and every such detection's input event
        was produced in this run; empty when the chain is whole."""
        seen = self.observed
        problems = []
        for alert in seen.alerts:
            if not alert.detection_ids:
                problems.append(f"alert {alert.fingerprint} {alert.event}: no detection ids")
            for det_id in alert.detection_ids:
                det = seen.detections.get(det_id)
                if det is None:
                    problems.append(f"alert {alert.fingerprint} {alert.event}: detection {det_id} never seen")
                elif det.input_event_id not in seen.inputs:
                    problems.append(f"detection {det_id}: input event {det.input_event_id} not produced in this run")
        return problems

    def detection_latencies_ms(self) -> list[float]:
        """Capture → detection read back from Kafka, per detection."""
        seen = self.observed
        return sorted((seen.detection_read_at[i] - d.captured_at).total_seconds() * 1000
                      for i, d in seen.detections.items() if d.input_event_id in seen.inputs)

    def detection_breakdowns(self) -> list[Breakdown]:
        """Capture → detection read, per modality and per stage (:mod:`deploy.local.latency`)."""
        seen = self.observed
        by_modality: dict[str, list[Times]] = {}
        for i, d in seen.detections.items():
            if d.input_event_id not in seen.inputs:
                continue
            by_modality.setdefault(d.modality, []).append(Times.of(
                d, seen.input_logged_at.get(d.input_event_id), seen.detection_logged_at.get(i),
                seen.detection_read_at.get(i), seen.window_s.get(d.input_event_id, 0.0)))
        return [breakdown(m, times) for m, times in sorted(by_modality.items())]

    def notification_breakdowns(self) -> dict[str, dict[str, tuple[float, float, int]]]:
        """Capture → firing webhook delivered, per modality of the newest detection the alert
        cites, split at that detection's publication (processor | alerting)."""
        seen, items = self.observed, []
        for delivered in self.notifications_on("/webhook"):
            body = delivered.json()
            if body["event"] != "firing":
                continue
            dets = [seen.detections[i] for i in body["alert"]["detection_ids"] if i in seen.detections]
            if dets:
                newest = max(dets, key=lambda d: d.captured_at)
                items.append(Notified(newest.modality, newest.captured_at, seen.detection_logged_at.get(newest.id),
                                      datetime.fromtimestamp(delivered.at, timezone.utc)))
        return notify_breakdown(items)

    def alert_latencies_ms(self) -> list[float]:
        """Capture of the newest window an alert was fired on → its webhook delivered. Includes
        confirmation (k of n windows) and the route's group_wait: what an operator waits."""
        out = []
        for delivered in self.notifications_on("/webhook"):
            body = delivered.json()
            if body["event"] != "firing":
                continue
            captured = [self.observed.detections[i].captured_at for i in body["alert"]["detection_ids"]
                        if i in self.observed.detections]
            if captured:
                out.append((delivered.at - max(captured).timestamp()) * 1000)
        return sorted(out)


async def run_pipeline(settings: Settings, receiver: RecordingReceiver, workdir: Path, *, seconds: float,
                       name: str = "demo", resolve_wait_s: float = 15.0, start_timeout_s: float = 180.0,
                       field_clips: Sequence[FieldClip] = (), synthetic: bool = True, console_port: int | None = None,
                       on_tick: Callable[[Observed, float, str], None] = lambda seen, elapsed, phase: None,
                       ) -> RunReport:
    """Start the services (and, with ``console_port``, the console on 127.0.0.1:``console_port``),
    stream the synthetic camera and microphone (unless ``synthetic`` is false) and each of
    ``field_clips`` as its own camera for ``seconds``, wait for the alerts to resolve, stop
    everything; return what was seen."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "skysentry.yaml"
    doc = pipeline_config(settings.kafka.bootstrap_servers, settings.redis.url.get_secret_value(), receiver,
                          topics=settings.topics, name=name)
    keys = ("vision", "audio", "alerting")
    metrics_ports: dict[str, int] = {}
    if console_port is not None:  # notifications link to the evidence the console serves
        doc["evidence"] = {"public_url": f"http://127.0.0.1:{console_port}"}
        # its health page probes each service's /livez, /readyz and /metrics (a port each)
        metrics_ports = {key: free_port() for key in keys}
        doc["console"] = {"services": {key: f"http://127.0.0.1:{port}" for key, port in metrics_ports.items()},
                          "lag_groups": list(group_ids(name).values())}
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    secret = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSENTRY_")}
    env.update({WEBHOOK_SECRET_ENV: secret, TWILIO_TOKEN_ENV: secret, "PYTHONUNBUFFERED": "1"})
    if console_port is not None:
        env[EVIDENCE_SECRET_ENV] = secrets.token_hex(16)
    services = {key: ServiceProcess(name, args, config, env=with_metrics(env, metrics_ports.get(key)), log_path=workdir / f"{key}.log", cwd=ROOT)
                for key, name, args in zip(keys, ("vision processor", "audio processor", "alerting"),
                                           (["stream_processors", "vision"], ["stream_processors", "audio"],
                                            ["alerting", "run"]))}
    producers: dict[str, CameraProducer | MicrophoneProducer] = {}
    if synthetic:
        producers["camera"] = CameraProducer(settings.camera, settings.kafka, settings.topics)
        producers["microphone"] = MicrophoneProducer(settings.mic, settings.kafka, settings.topics)
    for clip in field_clips:
        producers[clip.camera_id] = CameraProducer(clip.camera(), settings.kafka, settings.topics)
    t0 = time.monotonic()
    try:
        async with Watcher(settings) as watcher:
            for svc in services.values():
                svc.start()
            waiting = [asyncio.create_task(svc.wait_assigned(timeout=start_timeout_s)) for svc in services.values()]
            while not all(t.done() for t in waiting):
                on_tick(watcher.seen, time.monotonic() - t0, "starting services")
                await asyncio.wait(waiting, timeout=0.25)
            for t in waiting:
                t.result()  # raise why a service did not start
            if console_port is not None:
                on_tick(watcher.seen, time.monotonic() - t0, "starting the console")
                services["console"] = await asyncio.to_thread(
                    start_console, config, port=console_port, env=env, log_path=workdir / "console.log")

            stop = asyncio.Event()
            producing = [asyncio.create_task(p.run(stop)) for p in producers.values()]
            t1 = time.monotonic()
            while time.monotonic() - t1 < seconds and not any(p.done() for p in producing):
                on_tick(watcher.seen, time.monotonic() - t0, "streaming")
                await asyncio.sleep(0.25)
            stop.set()
            await asyncio.gather(*producing)

            deadline = time.monotonic() + resolve_wait_s
            while time.monotonic() < deadline and not _all_resolved(watcher.seen):
                on_tick(watcher.seen, time.monotonic() - t0, "waiting for alerts to resolve")
                await asyncio.sleep(0.25)
            await asyncio.sleep(1.0)  # the last notifications after the `alerts` events
            on_tick(watcher.seen, time.monotonic() - t0, "stopping")
    finally:
        exits = {name_: await asyncio.to_thread(svc.stop) for name_, svc in services.items()}
    return RunReport(
        observed=watcher.seen, notifications=receiver.requests(), webhook_secret=secret, log_dir=workdir,
        producers={key: {"published": p.publisher.stats.published, "dropped": p.publisher.stats.dropped}
                   for key, p in producers.items() if p.publisher is not None},
        services=exits, service_errors={n: s.errors() for n, s in services.items()}, field_clips=tuple(field_clips))


def _all_resolved(seen: Observed) -> bool:
    status: dict[str, str] = {}
    for a in seen.alerts:
        status[a.fingerprint] = a.status
    return bool(status) and all(s == "resolved" for s in status.values())
