"""Camera producer: frames from OpenCV (device, file, RTSP/HTTP) or the synthetic scene onto
``sensor.frames``, JPEG-encoded, keyed by camera id, CloudEvents binary mode.

Real time first: a capture thread reads the source as fast as it delivers and keeps only the
newest frame; the publishing loop takes that frame at the target fps. A source faster than
the target is thinned (dropped, never queued); a stream that drops is reopened with
exponential backoff. Files are paced at their own frame rate and can ``--loop``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
from prometheus_client import Counter

from producers.publisher import BufferedPublisher
from skysentry.bus import make_producer
from skysentry.config import CameraSettings, KafkaSettings, TopicSettings
from skysentry.messages import FrameEvent, encode_frame

log = logging.getLogger(__name__)

FRAMES_CAPTURED = Counter("skysentry_camera_frames_captured_total", "Frames read from the source", ["camera"])
FRAMES_THINNED = Counter("skysentry_camera_frames_thinned_total",
                         "Frames skipped because the source is faster than the target fps", ["camera"])
RECONNECTS = Counter("skysentry_camera_reconnects_total", "Times the source was reopened", ["camera"])


class SourceUnavailable(RuntimeError):
    """The camera source cannot be opened; the message says what to check."""


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # "device", "file", "url", "synthetic"
    target: int | str

    @classmethod
    def parse(cls, source: str) -> "SourceSpec":
        if source == "synthetic":
            return cls("synthetic", source)
        if source.isdigit():
            return cls("device", int(source))
        if "://" in source:
            return cls("url", source)
        return cls("file", source)

    @property
    def is_live(self) -> bool:
        return self.kind in ("device", "url")


def open_capture(spec: SourceSpec, open_timeout_s: float = 5.0) -> cv2.VideoCapture:
    """Open an OpenCV capture or raise SourceUnavailable with a helpful message."""
    if spec.kind == "file" and not Path(str(spec.target)).is_file():
        raise SourceUnavailable(f"video file {spec.target} does not exist")
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(open_timeout_s * 1000)]
    if spec.kind == "device":
        cap = cv2.VideoCapture(spec.target)
    else:
        cap = cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        hint = {
            "device": "check that the camera is connected and not used by another program (ls /dev/video*)",
            "url": "check the address, credentials and that the stream is up (try it in ffplay/VLC)",
            "file": "the file exists but OpenCV cannot decode it; is it a video?",
        }[spec.kind]
        raise SourceUnavailable(f"cannot open camera source {redacted(spec)}: {hint}")
    return cap


def redacted(spec: SourceSpec) -> str:
    from skysentry.logs import redact

    return redact(str(spec.target))


class LatestFrame:
    """A one-slot mailbox between the capture thread and the event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: tuple[np.ndarray, datetime] | None = None
        self.overwritten = 0

    def put(self, frame: np.ndarray, captured: datetime) -> None:
        with self._lock:
            if self._frame is not None:
                self.overwritten += 1
            self._frame = (frame, captured)

    def take(self) -> tuple[np.ndarray, datetime] | None:
        with self._lock:
            frame, self._frame = self._frame, None
            return frame


def encode_jpeg(frame: np.ndarray, max_width: int, quality: int) -> tuple[bytes, int, int]:
    """Downscale to ``max_width`` (keeping aspect) and JPEG-encode; return (bytes, w, h)."""
    h, w = frame.shape[:2]
    if w > max_width:
        h = round(h * max_width / w)
        w = max_width
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes(), w, h


class CameraProducer:
    """One camera → ``sensor.frames``. ``run(stop)`` until stopped or a file ends."""

    def __init__(self, camera: CameraSettings, kafka: KafkaSettings, topics: TopicSettings,
                 *, max_frames: int | None = None) -> None:
        self.cfg = camera
        self.kafka = kafka
        self.topic = topics.frames
        self.spec = SourceSpec.parse(camera.source)
        self.max_frames = max_frames
        self.mailbox = LatestFrame()
        self.seq = 0
        self.source_ended = threading.Event()
        self.publisher: BufferedPublisher | None = None

    # -- capture side (thread) -------------------------------------------------------------
    def _capture_loop(self, stop: threading.Event) -> None:
        if self.spec.kind == "synthetic":
            return self._synthetic_loop(stop)
        cap = open_capture(self.spec)
        native_fps = cap.get(cv2.CAP_PROP_FPS) or 0
        file_period = 1.0 / native_fps if (self.spec.kind == "file" and 1 <= native_fps <= 240) else 0.0
        backoff = self.cfg.reconnect_initial_s
        next_due = time.monotonic()
        try:
            while not stop.is_set():
                ok, frame = cap.read()
                if ok:
                    FRAMES_CAPTURED.labels(self.cfg.camera_id).inc()
                    self.mailbox.put(frame, datetime.now(timezone.utc))
                    backoff = self.cfg.reconnect_initial_s
                    if file_period:  # replay a file at its own pace
                        next_due += file_period
                        stop.wait(max(0.0, next_due - time.monotonic()))
                    continue
                if self.spec.kind == "file":
                    if not self.cfg.loop:
                        break
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    next_due = time.monotonic()
                    continue
                # A live stream dropped: reopen with exponential backoff.
                cap.release()
                log.warning("camera %s lost its stream; reconnecting in %.1fs", self.cfg.camera_id, backoff)
                while not stop.wait(backoff):
                    RECONNECTS.labels(self.cfg.camera_id).inc()
                    try:
                        cap = open_capture(self.spec)
                        log.info("camera %s reconnected", self.cfg.camera_id)
                        break
                    except SourceUnavailable as exc:
                        backoff = min(self.cfg.reconnect_max_s, backoff * 2)
                        log.warning("%s; next try in %.1fs", exc, backoff)
        finally:
            cap.release()
            self.source_ended.set()

    def _synthetic_loop(self, stop: threading.Event) -> None:
        from skysentry.synthetic import SyntheticScene

        scene = SyntheticScene(seed=zlib.crc32(self.cfg.camera_id.encode()) % 1000, fps=self.cfg.fps)
        t0 = time.monotonic()
        try:
            while not stop.wait(1.0 / max(self.cfg.fps, 0.1)):
                frame, _truth = scene.frame_at(time.monotonic() - t0)
                FRAMES_CAPTURED.labels(self.cfg.camera_id).inc()
                self.mailbox.put(frame, datetime.now(timezone.utc))
        finally:
            self.source_ended.set()

    # -- publishing side (event loop) --------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        if self.spec.kind != "synthetic":  # fail fast and clearly if the source is not there
            await asyncio.to_thread(lambda: open_capture(self.spec).release())
        self.publisher = BufferedPublisher(lambda: make_producer(self.kafka), self.topic,
                                           capacity=self.cfg.buffer_frames, retry_failed=False)
        await self.publisher.start()
        sender = asyncio.create_task(self.publisher.run())
        thread_stop = threading.Event()
        capture = asyncio.create_task(asyncio.to_thread(self._capture_loop, thread_stop))
        period = 1.0 / self.cfg.fps
        next_tick = time.monotonic()
        log.info("camera %s → %s at %.1f fps", self.cfg.camera_id, self.topic, self.cfg.fps)
        try:
            while not stop.is_set() and (self.max_frames is None or self.seq < self.max_frames):
                next_tick += period
                await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
                if capture.done():
                    capture.result()  # re-raise a capture error
                got = self.mailbox.take()
                if got is None:
                    if self.source_ended.is_set():
                        break
                    continue
                frame, captured = got
                jpeg, w, h = await asyncio.to_thread(encode_jpeg, frame, self.cfg.max_width, self.cfg.jpeg_quality)
                event = FrameEvent(source=self.cfg.camera_id, site=self.cfg.site, time=captured,
                                   seq=self.seq, width=w, height=h)
                self.publisher.offer(*encode_frame(event, jpeg))
                self.seq += 1
        finally:
            thinned = self.mailbox.overwritten
            FRAMES_THINNED.labels(self.cfg.camera_id).inc(thinned)
            thread_stop.set()
            await asyncio.gather(capture, return_exceptions=True)
            self.publisher.close()
            try:
                await asyncio.wait_for(sender, timeout=self.kafka.request_timeout_ms / 1000)
            except asyncio.TimeoutError:
                self.publisher.close(give_up=True)
                await sender
            await self.publisher.stop()
            s = self.publisher.stats
            log.info("camera %s stopped: %d frames offered, %d published, %d dropped, %d thinned",
                     self.cfg.camera_id, s.offered, s.published, s.dropped, thinned)
