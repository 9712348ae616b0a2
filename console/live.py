"""The live wall's data: the latest frames and detections, read from Kafka and pushed to browsers.

    sensor.frames ─┐                                 ┌─▶ Mailbox (browser 1) ─▶ SSE
                   ├─▶ LiveReader ─▶ Wall ─▶ Hub ─────┼─▶ Mailbox (browser 2) ─▶ SSE
    detections  ───┘    (from the end, never        └─▶ ...
                         a backlog)

The reader joins no consumer group: every console must see every camera, and a group would split
the partitions between two consoles. It assigns itself every partition of both topics, seeks to
their end at start (and whenever it falls more than ``max_frame_age`` behind on frames), and
commits nothing. Memory is bounded: per camera the last few frames (so a browser can fetch the
frame an event named) and its latest detection; per microphone the last ``score_window`` of
scores; a bounded map detection id → input event id for the alerts' lineage.

A browser's :class:`Mailbox` keeps only the newest event per key (one per camera, one per
microphone, one per alert): a slow browser gets the latest state when it is ready again, never
a backlog, and the stream never grows in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from urllib.parse import quote

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from console import metrics
from skysentry.bus import make_consumer
from skysentry.config import KafkaSettings, TopicSettings
from skysentry.messages import ContractError, Detection, FrameEvent, ScoreSummary, decode_event, decode_frame

log = logging.getLogger(__name__)


async def keep_reading(what: str, where: str, read, stop: asyncio.Event, *, on_down) -> None:
    """Run the coroutine function ``read`` until it returns or ``stop`` is set. Whatever breaks it
    (Kafka away, a bug) is logged once per failure, ``on_down()`` marks the reader down, and it
    runs again after a back-off (0.5 s doubling to 10 s): a console that stops reading shows a
    frozen wall and looks healthy."""
    delay = 0.5
    while not stop.is_set():
        try:
            await read()
            return
        except (KafkaError, OSError) as exc:
            on_down()
            log.warning("%s: %s not readable (%s); retrying in %.1f s", what, where, type(exc).__name__, delay)
        except Exception:  # noqa: BLE001 - the reader must come back whatever broke it
            on_down()
            log.exception("%s: the reader failed; starting it again in %.1f s", what, delay)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, 10.0)

FRAMES_KEPT = 4  # per camera: the event a browser was told about is still there when it asks


# ------------------------------------------------------------------------------ push


class Mailbox:
    """One browser's pending events, newest per key (latest wins)."""

    def __init__(self, kinds: frozenset[str]):
        self.kinds = kinds
        self.pending: OrderedDict[tuple, bytes] = OrderedDict()
        self.ready = asyncio.Event()
        self.closed = False

    def put(self, key: tuple, message: bytes) -> None:
        self.pending.pop(key, None)
        self.pending[key] = message
        self.ready.set()

    def take(self) -> list[bytes]:
        out = list(self.pending.values())
        self.pending.clear()
        self.ready.clear()
        return out


class Hub:
    """Fan-out of server-sent events to the browsers connected now."""

    KINDS = frozenset({"frame", "score", "alert", "health"})

    def __init__(self) -> None:
        self.boxes: set[Mailbox] = set()

    def subscribe(self, kinds: frozenset[str] = KINDS) -> Mailbox:
        box = Mailbox(kinds & self.KINDS or self.KINDS)
        self.boxes.add(box)
        metrics.BROWSERS.set(len(self.boxes))
        return box

    def unsubscribe(self, box: Mailbox) -> None:
        self.boxes.discard(box)
        metrics.BROWSERS.set(len(self.boxes))

    def publish(self, key: tuple, event: str, data: dict) -> None:
        targets = [b for b in self.boxes if event in b.kinds]
        if not targets:
            return
        message = f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
        for box in targets:
            box.put(key, message)

    def close(self) -> None:
        """End every stream (the console is stopping)."""
        for box in list(self.boxes):
            box.closed = True
            box.ready.set()


# ------------------------------------------------------------------------------ state


@dataclass
class Frame:
    seq: int
    event_id: str
    time: str  # capture time, ISO
    width: int
    height: int
    jpeg: bytes


@dataclass
class Camera:
    source: str
    site: str
    frames: deque[Frame] = field(default_factory=lambda: deque(maxlen=FRAMES_KEPT))
    detection: Detection | None = None
    detection_at: float = 0.0  # monotonic, when it was read


@dataclass
class Microphone:
    source: str
    site: str
    scores: deque[tuple[float, float]] = field(default_factory=deque)  # (unix s, score), oldest first

    @property
    def score(self) -> float | None:
        return self.scores[-1][1] if self.scores else None


class Lineage:
    """Detection id → what it was made from, for the last ``size`` detections read."""

    def __init__(self, size: int = 50_000):
        self.size = size
        self._map: OrderedDict[str, dict] = OrderedDict()

    def add(self, d: Detection) -> None:
        self._map[d.id] = {"detection_id": d.id, "input_event_id": d.input_event_id, "source": d.source,
                           "seq": d.input_seq, "captured_at": d.captured_at.isoformat(), "score": d.score,
                           "label": d.label, "model": f"{d.model.name} {d.model.version}"}
        self._map.move_to_end(d.id)
        while len(self._map) > self.size:
            self._map.popitem(last=False)

    def get(self, detection_id: str) -> dict | None:
        return self._map.get(detection_id)


class Wall:
    """What the wall shows now, and the events it pushes."""

    def __init__(self, hub: Hub, *, score_window_s: float = 60.0, box_hold_s: float = 1.5):
        self.hub = hub
        self.score_window_s = score_window_s
        self.box_hold_s = box_hold_s
        self.cameras: dict[str, Camera] = {}
        self.microphones: dict[str, Microphone] = {}
        self.lineage = Lineage()

    # -- in

    def on_frame(self, event: FrameEvent, jpeg: bytes) -> None:
        cam = self.cameras.get(event.source)
        if cam is None:
            cam = self.cameras[event.source] = Camera(event.source, event.site)
        cam.site = event.site
        cam.frames.append(Frame(event.seq, event.id, event.time.isoformat(), event.width, event.height, bytes(jpeg)))
        self.hub.publish(("frame", event.source), "frame", self.camera_view(cam))

    def on_detection(self, d: Detection) -> None:
        self.lineage.add(d)
        if d.modality == "vision":
            cam = self.cameras.get(d.source)
            if cam is None:  # seen on detections before any frame: listed, without a picture yet
                cam = self.cameras[d.source] = Camera(d.source, d.site)
            cam.detection, cam.detection_at = d, time.monotonic()
        else:
            self._score(d.site, d.source, d.captured_at.timestamp(), d.score)

    def on_summary(self, s: ScoreSummary) -> None:
        if s.modality == "audio":
            self._score(s.site, s.source, s.window_end.timestamp(), s.max_score)
        elif s.source not in self.cameras:
            self.cameras[s.source] = Camera(s.source, s.site)

    def _score(self, site: str, source: str, t: float, score: float) -> None:
        mic = self.microphones.get(source)
        if mic is None:
            mic = self.microphones[source] = Microphone(source, site)
        mic.scores.append((t, score))
        if len(mic.scores) > 1 and mic.scores[-2][0] > t:  # out of order (rare): keep them sorted
            mic.scores = deque(sorted(mic.scores))
        horizon = max(t, time.time()) - self.score_window_s
        while mic.scores and mic.scores[0][0] < horizon:
            mic.scores.popleft()
        self.hub.publish(("score", source), "score", {"source": source, "site": site, "t": t, "score": score})

    # -- out

    def frame(self, source: str, seq: int | None = None) -> Frame | None:
        cam = self.cameras.get(source)
        if cam is None or not cam.frames:
            return None
        if seq is None:
            return cam.frames[-1]
        return next((f for f in cam.frames if f.seq == seq), None)

    def camera_view(self, cam: Camera) -> dict:
        latest = cam.frames[-1] if cam.frames else None
        d = cam.detection
        fresh = d is not None and time.monotonic() - cam.detection_at <= self.box_hold_s
        view = {"source": cam.source, "site": cam.site, "seq": None, "time": None, "width": None, "height": None,
                "url": None, "boxes": [], "detection": None}
        if latest is not None:
            view.update(seq=latest.seq, time=latest.time, width=latest.width, height=latest.height,
                        url=f"/frames/{quote(cam.source, safe='')}.jpg?seq={latest.seq}")
        if fresh:
            view["boxes"] = [b.model_dump() for b in d.boxes]
            view["detection"] = {"id": d.id, "label": d.label, "score": d.score, "input_event_id": d.input_event_id,
                                 "input_seq": d.input_seq, "model": f"{d.model.name} {d.model.version}"}
        return view

    def view(self) -> dict:
        now = time.time()
        mics = []
        for mic in sorted(self.microphones.values(), key=lambda m: m.source):
            points = [[t, s] for t, s in mic.scores if t >= now - self.score_window_s]
            mics.append({"source": mic.source, "site": mic.site, "score": mic.score, "scores": points})
        return {"cameras": [self.camera_view(c) for c in sorted(self.cameras.values(), key=lambda c: c.source)],
                "microphones": mics, "score_window_s": self.score_window_s}


# ------------------------------------------------------------------------------ Kafka


async def assign_all(consumer, topics: list[str], current: set[TopicPartition]) -> tuple[set[TopicPartition], bool]:
    """Assign every partition of ``topics`` that exists now; new ones are read from their end.
    Returns (the assignment, whether every topic was found)."""
    cluster = await consumer._client.fetch_all_metadata()  # a fresh look: topics made after start
    found = {t: cluster.partitions_for_topic(t) or set() for t in topics}
    wanted = {TopicPartition(t, p) for t, parts in found.items() for p in parts}
    complete = all(found.values())
    if wanted == current or not wanted:
        return current, complete
    consumer.assign(sorted(wanted))
    await consumer.seek_to_end(*sorted(wanted))
    return wanted, complete


class LiveReader:
    """Frames and detections from their end, into the wall; reconnects forever."""

    def __init__(self, kafka: KafkaSettings, topics: TopicSettings, wall: Wall, *, client_id: str,
                 max_frame_age_s: float = 5.0):
        self.kafka = kafka.model_copy(update={"client_id": client_id})
        self.topics = topics
        self.wall = wall
        self.max_frame_age_s = max_frame_age_s
        self.connected = False
        self.partitions = 0  # assigned now
        self.frames_read = 0
        self.frames_skipped = 0
        self.invalid = 0

    async def run(self, stop: asyncio.Event) -> None:
        await keep_reading("live wall", f"Kafka at {self.kafka.bootstrap_servers}", lambda: self._read(stop), stop,
                           on_down=lambda: setattr(self, "connected", False))

    async def _read(self, stop: asyncio.Event) -> None:
        consumer = make_consumer(self.kafka, group_id=None, auto_offset_reset="latest", fetch_max_wait_ms=100)
        await consumer.start()
        try:
            topics = [self.topics.frames, self.topics.detections]
            assigned: set[TopicPartition] = set()
            next_look = 0.0
            last_skip: dict[TopicPartition, float] = {}
            while not stop.is_set():
                if time.monotonic() >= next_look:
                    assigned, complete = await assign_all(consumer, topics, assigned)
                    self.connected = True
                    self.partitions = len(assigned)
                    next_look = time.monotonic() + (10.0 if complete else 1.0)
                if not assigned:
                    await asyncio.sleep(0.2)
                    continue
                batch = await consumer.getmany(timeout_ms=200, max_records=1000)
                for tp, records in batch.items():
                    if tp.topic == self.topics.frames:
                        await self._frames(consumer, tp, records, last_skip)
                    else:
                        self._detections(records)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 3.0)

    async def _frames(self, consumer, tp: TopicPartition, records: list, last_skip: dict) -> None:
        """Show the newest frame of each camera in the batch; a batch far behind jumps to the end."""
        newest: dict[str, tuple] = {}
        for r in records:
            try:
                event = decode_frame(r.value, r.headers)
            except ContractError:
                self.invalid += 1
                metrics.INVALID.inc()
                continue
            newest[event.source] = (event, r.value)
        self.frames_read += len(records)
        metrics.FRAMES.inc(len(records))
        age = time.time() - records[-1].timestamp / 1000 if records else 0.0
        if age > self.max_frame_age_s and time.monotonic() - last_skip.get(tp, 0.0) > 1.0:
            last_skip[tp] = time.monotonic()
            self.frames_skipped += 1
            metrics.SKIPS.inc()
            await consumer.seek_to_end(tp)  # behind: what is queued is history, not the wall
            return
        for event, jpeg in newest.values():
            self.wall.on_frame(event, jpeg)

    def _detections(self, records: list) -> None:
        for r in records:
            try:
                _, message = decode_event(r.value, r.headers, (Detection, ScoreSummary))
            except ContractError:
                self.invalid += 1
                metrics.INVALID.inc()
                continue
            if isinstance(message, Detection):
                self.wall.on_detection(message)
            else:
                self.wall.on_summary(message)
