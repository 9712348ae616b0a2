"""Evidence capture: the pixels and samples behind an alert, read back from the sensor topics
by the detection's lineage and rendered into an evidence set (alerting/evidence.py).

Why read them back instead of having the processors hand them over: the processors know
nothing of alerts, so handing over would mean writing the input of *every* detection
somewhere (a second copy of each JPEG at the processor's rate), while an alert needs a few
a minute. ``sensor.frames`` and ``sensor.audio`` already keep every input for 6 h: the
detection names its input (``input_event_id`` = the record's ``ce_id``, ``captured_at``), the
source id is the record key and chooses the partition (:func:`skysentry.bus.partition_for`),
and the producer's record timestamp is at or after the capture time. So one partition, read
from just before the capture time for a few seconds' worth of records, holds the frame and
the clip around it. The processors are untouched (bench/pipeline.py ratios unchanged).

One consumer without a group (manual assignment), shared under a lock; decoding and
encoding run in a thread. Every failure (topic gone, frame past retention, broker away) is
logged and the notification goes without links after at most ``capture_timeout``.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
import wave
from collections import OrderedDict
from datetime import datetime, timedelta, timezone

import cv2
import numpy as np
from aiokafka import TopicPartition

from alerting.evidence import FILES, META, EvidenceSettings, EvidenceStore, signed_url
from alerting.notification import Evidence
from skysentry.mel import mel_filterbank
from skysentry.bus import make_consumer, partition_for
from skysentry.config import KafkaSettings, TopicSettings
from skysentry.messages import Box, ContractError, EvidenceMedia, FrameEvent, decode_audio, decode_frame

log = logging.getLogger(__name__)

SLACK_BEFORE_S = 1.0  # the record timestamp (producer's send time) is at or after capture
SLACK_AFTER_S = 5.0  # ... but a frame may wait in the producer's buffer this long
RED = (40, 40, 230)  # BGR


class EvidenceCollector:
    """Stores the evidence of an alert's strongest detection once, and signs links to it."""

    def __init__(self, settings: EvidenceSettings, kafka: KafkaSettings, topics: TopicSettings,
                 store: EvidenceStore | None = None):
        self.settings = settings
        self.kafka = kafka
        self.topics = topics
        self.store = store or EvidenceStore.of(settings)
        self._consumer = None
        self._lock = asyncio.Lock()
        self._done: OrderedDict[str, dict[str, str]] = OrderedDict()  # set prefix → {file: key}

    async def start(self) -> None:
        self._consumer = make_consumer(self.kafka, group_id=None, auto_offset_reset="latest")
        await self._consumer.start()
        if self.settings.secret is None:
            log.warning("evidence is stored but notifications carry no links: set SKYSENTRY_EVIDENCE__SECRET "
                        "(the console serves evidence only by signed links)")

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    # ------------------------------------------------------------------ for the dispatcher

    async def media(self, alert_id: str, evidence: Evidence, *, now: float | None = None) -> EvidenceMedia | None:
        """Signed links to this alert's evidence set, stored first if it is not yet (at most
        ``capture_timeout``); None when nothing could be stored or links are off."""
        files = await self.collect(alert_id, evidence)
        secret = self.settings.secret
        if not files or secret is None:
            return None
        expires = int((time.time() if now is None else now) + self.settings.link_ttl)
        urls = {FILES[name][1]: signed_url(self.settings.public_url, secret.get_secret_value(), key, expires)
                for name, key in files.items() if name in FILES}
        return EvidenceMedia(**urls, expires_at=datetime.fromtimestamp(expires, timezone.utc))

    async def collect(self, alert_id: str, evidence: Evidence) -> dict[str, str]:
        """{file name: store key} of the evidence set, written now unless already there."""
        if not (evidence.detection_id and evidence.input_event_id and evidence.source and evidence.captured_at):
            return {}
        prefix = f"{alert_id}/{evidence.detection_id}"
        if prefix in self._done:
            return self._done[prefix]
        t0 = time.perf_counter()
        try:
            async with self._lock:
                files = await asyncio.wait_for(self._collect(prefix, evidence), self.settings.capture_timeout)
        except asyncio.TimeoutError:
            log.warning("evidence of detection %s not stored within %.1f s; notifying without it",
                        evidence.detection_id, self.settings.capture_timeout)
            files = {}
        except Exception as exc:  # noqa: BLE001 - evidence never stops a notification
            log.warning("evidence of detection %s not stored: %s: %s", evidence.detection_id,
                        type(exc).__name__, str(exc)[:300])
            files = {}
        self._done[prefix] = files
        while len(self._done) > 256:
            self._done.popitem(last=False)
        if files:
            log.info("evidence stored", extra={"fields": {"set": prefix, "files": sorted(files),
                                                          "seconds": round(time.perf_counter() - t0, 3)}})
        return files

    async def _collect(self, prefix: str, ev: Evidence) -> dict[str, str]:
        meta = await asyncio.to_thread(self.store.meta, prefix)
        if meta is not None:  # stored before: an earlier repeat, or another replica
            return {name: f"{prefix}/{name}" for name in meta.get("files", [])}
        vision = ev.modality == "vision"
        topic = self.topics.frames if vision else self.topics.audio
        before = self.settings.clip_before if vision else 0.0
        after = self.settings.clip_after if vision else 0.0
        records = await self._read(topic, ev.source, ev.captured_at, before, after)
        target = next((r for r in records if _header(r, "ce_id") == ev.input_event_id), None)
        if target is None:
            raise LookupError(f"input {ev.input_event_id} of {ev.source} is not in {topic} (past its retention, "
                              f"or written elsewhere); {len(records)} record(s) of that source read around it")
        if vision:
            files = await asyncio.to_thread(render_vision, target, records, ev, self.settings)
        else:
            files = await asyncio.to_thread(render_audio, target)
        stored = await asyncio.to_thread(self._write, prefix, files, ev)
        return stored

    def _write(self, prefix: str, files: dict[str, bytes], ev: Evidence) -> dict[str, str]:
        for name, data in files.items():
            self.store.put(f"{prefix}/{name}", data)
        meta = {"stored_at": datetime.now(timezone.utc).isoformat(), "files": sorted(files),
                "evidence": ev.model_dump(mode="json", exclude={"media"})}
        self.store.put(f"{prefix}/{META}", json.dumps(meta).encode())  # last: the set is complete
        return {name: f"{prefix}/{name}" for name in files}

    async def _read(self, topic: str, source: str, captured_at: datetime, before_s: float, after_s: float) -> list:
        """The records of ``source`` on its partition of ``topic`` whose timestamps lie around
        ``captured_at`` (from ``before_s`` before to ``after_s`` after, with slack), as far as
        the partition goes now."""
        c = self._consumer
        parts = c.partitions_for_topic(topic)
        if not parts:  # not in this consumer's metadata yet (it is assigned one topic at a time)
            parts = (await c._client.fetch_all_metadata()).partitions_for_topic(topic)
        if not parts:
            raise LookupError(f"topic {topic} does not exist")
        key = source.encode()
        tp = TopicPartition(topic, partition_for(key, len(parts)))
        start_ms = int((captured_at.timestamp() - before_s - SLACK_BEFORE_S) * 1000)
        stop_ms = int((captured_at.timestamp() + after_s + SLACK_AFTER_S) * 1000)
        # Offsets first, with nothing assigned: while a partition is assigned, the consumer keeps
        # a fetch waiting on the broker (up to fetch_max_wait_ms, 500 ms) and an offset request
        # queues behind it on the same connection; half a second per alert, serialised.
        found = (await c.offsets_for_times({tp: start_ms}))[tp]
        end = (await c.end_offsets([tp]))[tp]
        if found is None or found.offset >= end:
            return []
        c.assign([tp])
        c.seek(tp, found.offset)
        out = []
        try:
            while True:
                batch = (await c.getmany(tp, timeout_ms=500, max_records=500)).get(tp, [])
                for r in batch:
                    if r.offset >= end or r.timestamp > stop_ms:
                        return out
                    if r.key == key:
                        out.append(r)
                if (batch and batch[-1].offset + 1 >= end) or (not batch and await c.position(tp) >= end):
                    return out  # read up to where the partition ended when we looked
        finally:
            c.assign([])  # idle between alerts: no fetch left waiting on the broker


def _header(record, name: str) -> str | None:
    for k, v in record.headers or ():
        if k == name:
            return bytes(v).decode(errors="replace")
    return None


# ------------------------------------------------------------------------------------ vision


def boxes_of(ev: Evidence) -> list[Box]:
    if ev.boxes:
        return list(ev.boxes)
    if ev.box:
        return [Box(x1=ev.box[0], y1=ev.box[1], x2=ev.box[2], y2=ev.box[3], score=ev.score or 0.0)]
    return []


def draw_boxes(image: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """Boxes (normalised coordinates) and their ``label score`` drawn in red, in place."""
    h, w = image.shape[:2]
    thick = max(2, round(w / 320))
    scale = max(0.4, w / 1600)
    for b in boxes:
        p1 = (int(round(b.x1 * (w - 1))), int(round(b.y1 * (h - 1))))
        p2 = (int(round(b.x2 * (w - 1))), int(round(b.y2 * (h - 1))))
        cv2.rectangle(image, p1, p2, RED, thick)
        text = f"{b.label} {b.score:.0%}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = p1[1] - th - base - thick if p1[1] - th - base - thick >= 0 else p2[1] + thick
        cv2.rectangle(image, (p1[0], top), (p1[0] + tw + 4, top + th + base + 2), RED, -1)
        cv2.putText(image, text, (p1[0] + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return image


def render_vision(target, records: list, ev: Evidence, settings: EvidenceSettings) -> dict[str, bytes]:
    """snapshot.jpg (boxes drawn), frame.jpg (as sent) and, from two frames up, clip.gif."""
    jpeg = bytes(target.value)
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"frame {ev.input_event_id} does not decode")
    boxes = boxes_of(ev)
    ok, snap = cv2.imencode(".jpg", draw_boxes(image.copy(), boxes), [cv2.IMWRITE_JPEG_QUALITY, 90])
    files = {"snapshot.jpg": snap.tobytes(), "frame.jpg": jpeg}
    clip = render_clip(target, records, ev, boxes, settings)
    if clip is not None:
        files["clip.gif"] = clip
    return files


def render_clip(target, records: list, ev: Evidence, boxes: list[Box], settings: EvidenceSettings) -> bytes | None:
    t = ev.captured_at
    lo, hi = t - timedelta(seconds=settings.clip_before), t + timedelta(seconds=settings.clip_after)
    frames: list[tuple[datetime, object]] = []
    for r in records:
        try:
            event: FrameEvent = decode_frame(r.value, r.headers)
        except ContractError:
            continue
        if lo <= event.time <= hi:
            frames.append((event.time, r))
    frames.sort(key=lambda x: x[0])
    if settings.clip_max_frames <= 0 or len(frames) < 2:
        return None
    if len(frames) > settings.clip_max_frames:  # evenly spaced, keeping the evidence frame
        step = len(frames) / settings.clip_max_frames
        picked = {int(i * step) for i in range(settings.clip_max_frames)}
        frames = [f for i, f in enumerate(frames) if i in picked or f[1] is target]
    images, times = [], []
    for when, r in frames:
        img = cv2.imdecode(np.frombuffer(bytes(r.value), np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            continue
        h, w = img.shape[:2]
        if w > settings.clip_width:
            img = cv2.resize(img, (settings.clip_width, round(h * settings.clip_width / w)), interpolation=cv2.INTER_AREA)
        if r is target:
            draw_boxes(img, boxes)
        cv2.putText(img, when.astimezone(timezone.utc).strftime("%H:%M:%S.%f")[:-4] + "Z", (6, img.shape[0] - 8),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        images.append(img)
        times.append(when)
    if len(images) < 2:
        return None
    gaps = [(b - a).total_seconds() * 1000 for a, b in zip(times, times[1:])]
    anim = cv2.Animation()
    anim.frames = images
    anim.durations = [int(min(1000, max(40, g))) for g in gaps] + [500]
    ok, buf = cv2.imencodeanimation(".gif", anim)
    return buf.tobytes() if ok else None


# ------------------------------------------------------------------------------------ audio


def render_audio(target) -> dict[str, bytes]:
    """window.wav (16-bit PCM, as sent) and spectrogram.png (log-mel)."""
    event, pcm = decode_audio(target.value, target.headers)
    return {"window.wav": wav_bytes(pcm, event.samplerate), "spectrogram.png": spectrogram_png(pcm, event.samplerate)}


def wav_bytes(pcm: np.ndarray, samplerate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(samplerate)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
    return buf.getvalue()


def log_mel(pcm: np.ndarray, samplerate: int, *, n_mels: int = 64) -> np.ndarray:
    """dB log-mel power ``[n_mels, frames]``; n_fft and hop scale with the sample rate."""
    n_fft = int(2 ** np.ceil(np.log2(512 * samplerate / 16000)))
    hop = max(1, round(160 * samplerate / 16000))
    x = np.asarray(pcm, dtype=np.float32) / 32768.0
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft + 1)[:-1], axis=1)) ** 2
    mel = mel_filterbank(n_mels, n_fft, samplerate, 50.0, min(8000.0, samplerate / 2)) @ power.T
    return 10.0 * np.log10(np.maximum(mel, 1e-10))


def spectrogram_png(pcm: np.ndarray, samplerate: int) -> bytes:
    """The log-mel spectrogram, 80 dB below its peak to its peak, low frequencies at the
    bottom, magma colours, each cell 4 x 4 pixels."""
    db = log_mel(pcm, samplerate)
    top = float(db.max())
    scaled = np.clip((db - (top - 80.0)) / 80.0 * 255.0, 0, 255).astype(np.uint8)[::-1]
    big = cv2.resize(scaled, (scaled.shape[1] * 4, scaled.shape[0] * 4), interpolation=cv2.INTER_NEAREST)
    ok, buf = cv2.imencode(".png", cv2.applyColorMap(big, cv2.COLORMAP_MAGMA))
    return buf.tobytes()
