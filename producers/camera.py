"""Camera producer: frames from OpenCV (device, file, RTSP/HTTP) or the synthetic scene onto
``sensor.frames``, JPEG-encoded, keyed by camera id, CloudEvents binary mode.

Real time first: a capture thread reads the source as fast as it delivers and keeps only the
newest frame; the publishing loop takes that frame at the target fps. A source faster than
the target is thinned (dropped, never queued). Files are paced at their own frame rate and
can ``--loop``.

A live source (device, rtsp://, http(s)://) heals itself like a camera system's recorder:
- it is opened, and reopened when lost, forever by default (``camera.reconnect``), after a
  short jittered back-off capped at seconds, and every ``reconnect_initial_s`` while the
  server says "not found" (a stream about to be re-announced);
- why it cannot be opened is said in words, once per cause (:mod:`producers.diagnose`);
  FFmpeg's and OpenCV's own console chatter is silenced (:func:`quiet_video_backends`);
- only new frames are published, stamped with the time they were read: a frame identical to
  the last one, or one whose stream timestamp is far behind the stream's usual delay (a
  decoder flushing its buffer after the stream stopped), is dropped;
- no new frame for ``stall_intervals`` frame intervals makes the source ``stale``
  (:mod:`producers.health`), and for ``read_timeout_s`` makes it reopen.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
from prometheus_client import Counter

from producers.diagnose import Cause, Diagnosis, diagnose
from producers.health import SourceHealth, SourceState
from producers.publisher import BufferedPublisher
from skysentry.bus import make_producer
from skysentry.config import CameraSettings, KafkaSettings, TopicSettings
from skysentry.messages import FrameEvent, encode_frame

log = logging.getLogger(__name__)

FRAMES_CAPTURED = Counter("skysentry_camera_frames_captured_total", "Frames read from the source", ["camera"])
FRAMES_THINNED = Counter("skysentry_camera_frames_thinned_total",
                         "Frames skipped because the source is faster than the target fps", ["camera"])
RECONNECTS = Counter("skysentry_camera_reconnects_total", "Times the source was reopened", ["camera"])
FRAMES_NOT_NEW = Counter("skysentry_camera_frames_not_new_total", "Frames of a live source dropped because they are "
                         "not new: identical to the previous one, or far behind the stream's clock", ["camera", "reason"])


class SourceUnavailable(RuntimeError):
    """The camera source cannot be opened; the message says what to check."""

    def __init__(self, message: str, cause: Cause | None = None) -> None:
        super().__init__(message)
        self.cause = cause


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


def quiet_video_backends() -> None:
    """Silence FFmpeg's and OpenCV's console lines ("method DESCRIBE failed: 404", "Stream timeout
    triggered", "can't be used to capture by name"): they would interleave raw text with the
    JSON log, and the cause is diagnosed and logged in words instead. Set OPENCV_FFMPEG_LOGLEVEL
    (e.g. 24, warnings) or OPENCV_LOG_LEVEL (e.g. WARNING) to see them again while debugging."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read when a capture opens
    if "OPENCV_LOG_LEVEL" not in os.environ:  # cv2 may be imported already: set it, not the variable
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def open_capture(spec: SourceSpec, open_timeout_s: float = 5.0, *, read_timeout_s: float | None = None,
                 rtsp_transport: str = "tcp") -> cv2.VideoCapture:
    """Open an OpenCV capture or raise SourceUnavailable saying why (diagnosed for URLs)."""
    quiet_video_backends()
    if spec.kind == "file" and not Path(str(spec.target)).is_file():
        raise SourceUnavailable(f"video file {spec.target} does not exist")
    if spec.kind == "device":
        cap = cv2.VideoCapture(spec.target)
    else:
        # Per-open FFmpeg options; the variable is read when the capture opens. 0.5 s of stream
        # analysis is enough for a camera's H.264/MJPEG and opens in about that time (the
        # default waits for the open timeout on a UDP stream).
        os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{rtsp_transport}|analyzeduration;500000"
        ms = int(open_timeout_s * 1000), int((read_timeout_s or open_timeout_s) * 1000)
        cap = cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG,
                               [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms[0], cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms[1]])
    if cap.isOpened():
        return cap
    cap.release()
    if spec.kind == "url":
        found = diagnose(str(spec.target), transport=rtsp_transport, timeout_s=min(open_timeout_s, 3.0))
    elif spec.kind == "device":
        found = Diagnosis(Cause.DEVICE)
    else:
        raise SourceUnavailable(f"cannot open camera source {redacted(spec)}: the file exists but OpenCV cannot "
                                "decode it; is it a video?")
    raise SourceUnavailable(f"cannot open camera source {found.message(str(spec.target))}", found.cause)


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


class FreshFrames:
    """Tells a live source's new frames from repeats and late ones.

    A frozen decoder hands back the same picture (same digest); after a stream stops, the
    decoder may still flush buffered frames, one per read timeout, each read *now* but taken
    long ago. The stream's own timestamps (``CAP_PROP_POS_MSEC``) expose those: the delay
    ``wall clock - stream time`` is steady while the stream flows and grows by a second per
    second during a flush. The steady delay is tracked as a running minimum that may creep up
    by ``drift`` (a camera's clock runs a little fast or slow against ours)."""

    def __init__(self, max_lag_s: float, drift: float = 1e-3) -> None:
        self.max_lag_s, self.drift = max_lag_s, drift
        self._digest: int | None = None
        self._delay: float | None = None
        self._last: tuple[float, float] = (0.0, 0.0)  # (stream s, wall s) of the previous frame

    def why_not_new(self, frame: np.ndarray, stream_ms: float, now: float) -> str | None:
        """None for a new frame, else the reason it is not new ("repeat" or "late")."""
        digest = zlib.crc32(np.ascontiguousarray(frame[::4, ::4]).data)
        repeat, self._digest = digest == self._digest, digest
        if repeat:
            return "repeat"
        if stream_ms <= 0:  # the source gives no timestamps (some devices)
            return None
        stream_s, (last_stream, last_now) = stream_ms / 1000, self._last
        self._last = (stream_s, now)
        delay = now - stream_s
        if self._delay is None or stream_s < last_stream:  # first frame, or the stream restarted its clock
            self._delay = delay
        else:
            self._delay = min(self._delay + self.drift * (now - last_now), delay)
        return "late" if delay - self._delay > self.max_lag_s else None


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
        self.health = SourceHealth("camera", camera.camera_id)
        self.last_new = time.monotonic()  # when the capture thread last put a new frame
        self.frame_interval = 1.0 / camera.fps  # the source's own interval when it is slower

    # -- capture side (thread) -------------------------------------------------------------
    def _capture_loop(self, stop: threading.Event) -> None:
        try:
            if self.spec.kind == "synthetic":
                self._synthetic_loop(stop)
            elif self.spec.kind == "file":
                self._file_loop(stop)
            else:
                self._live_loop(stop)
        finally:
            self.source_ended.set()

    def _file_loop(self, stop: threading.Event) -> None:
        cap = open_capture(self.spec)
        native_fps = cap.get(cv2.CAP_PROP_FPS) or 0
        period = 1.0 / native_fps if 1 <= native_fps <= 240 else 0.0
        next_due = time.monotonic()
        try:
            while not stop.is_set():
                ok, frame = cap.read()
                if ok:
                    FRAMES_CAPTURED.labels(self.cfg.camera_id).inc()
                    self.mailbox.put(frame, datetime.now(timezone.utc))
                    if period:  # replay a file at its own pace
                        next_due += period
                        stop.wait(max(0.0, next_due - time.monotonic()))
                elif self.cfg.loop:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    next_due = time.monotonic()
                else:
                    return
        finally:
            cap.release()

    def _live_loop(self, stop: threading.Event) -> None:
        """Open, read until the stream is lost or stalls, reopen; until ``stop``."""
        self.health.watch()
        first = True
        while not stop.is_set():
            cap = self._open_live(stop)
            if cap is None:
                return
            if not first:
                RECONNECTS.labels(self.cfg.camera_id).inc()
            first = False
            try:
                lost = self._read_live(cap, stop)
            finally:
                cap.release()
            if lost and not stop.is_set():
                self.health.set(SourceState.DOWN, lost)
                if not self.cfg.reconnect:
                    raise SourceUnavailable(f"camera {self.cfg.camera_id} {lost} (camera.reconnect is off)")

    def _open_live(self, stop: threading.Event) -> cv2.VideoCapture | None:
        """The opened source, after as many tries as it takes; None once ``stop`` is set."""
        tries = 0
        while not stop.is_set():
            try:
                return open_capture(self.spec, self.cfg.open_timeout_s, read_timeout_s=self.cfg.read_timeout_s,
                                    rtsp_transport=self.cfg.rtsp_transport)
            except SourceUnavailable as exc:
                if not self.cfg.reconnect:
                    raise
                self.health.set(SourceState.DOWN, str(exc))  # logs once per cause, not per try
                tries += 1
                delay = self.retry_delay(exc.cause, tries)
                log.debug("camera %s: try %d failed; next in %.2f s", self.cfg.camera_id, tries, delay)
                stop.wait(delay)
        return None

    def retry_delay(self, cause: Cause | None, tries: int) -> float:
        """"Not found" is a stream about to be (re-)announced: retry at the initial delay. Anything
        else doubles from it up to the cap, with full jitter so cameras that dropped together
        (a switch reboot) do not come back in lockstep."""
        if cause == Cause.NOT_FOUND:
            return self.cfg.reconnect_initial_s
        cap = min(self.cfg.reconnect_max_s, self.cfg.reconnect_initial_s * 2 ** min(tries - 1, 16))
        return random.uniform(self.cfg.reconnect_initial_s, max(cap, self.cfg.reconnect_initial_s))

    def _read_live(self, cap: cv2.VideoCapture, stop: threading.Event) -> str | None:
        """Read new frames into the mailbox; return why the stream is lost (None when stopped)."""
        fresh = FreshFrames(self.cfg.max_lag_s)
        native_fps = cap.get(cv2.CAP_PROP_FPS) or 0
        self.frame_interval = max(1.0 / self.cfg.fps, 1.0 / native_fps if 0.5 <= native_fps <= 240 else 0.0)
        self.last_new = time.monotonic()
        while not stop.is_set():
            ok, frame = cap.read()
            now = time.monotonic()
            if not ok:
                return "lost its stream (the read failed or the stream ended)"
            FRAMES_CAPTURED.labels(self.cfg.camera_id).inc()
            reason = fresh.why_not_new(frame, cap.get(cv2.CAP_PROP_POS_MSEC), now)
            if reason is None:
                self.last_new = now
                self.mailbox.put(frame, datetime.now(timezone.utc))
                self.health.set(SourceState.LIVE)
            else:
                FRAMES_NOT_NEW.labels(self.cfg.camera_id, reason).inc()
            if now - self.last_new > self.cfg.read_timeout_s:
                return (f"delivered no new frame for {now - self.last_new:.1f} s (frames frozen or behind the "
                        "stream's clock); reopening")
        return None

    def check_stall(self) -> None:
        """Called by the publishing loop each tick: a live source with no new frame for
        ``stall_intervals`` intervals goes stale (it is not down: it is still connected)."""
        if self.health.state != SourceState.LIVE:
            return
        quiet = time.monotonic() - self.last_new
        if quiet > self.cfg.stall_intervals * self.frame_interval:
            self.health.set(SourceState.STALE, f"no new frame for {quiet:.2f} s ({self.cfg.stall_intervals:g} "
                            f"frame intervals of {self.frame_interval:.2f} s): the stream stalled or froze")

    def _synthetic_loop(self, stop: threading.Event) -> None:
        from skysentry.synthetic import SyntheticScene

        scene = SyntheticScene(seed=zlib.crc32(self.cfg.camera_id.encode()) % 1000, fps=self.cfg.fps)
        t0 = time.monotonic()
        while not stop.wait(1.0 / max(self.cfg.fps, 0.1)):
            frame, _truth = scene.frame_at(time.monotonic() - t0)
            FRAMES_CAPTURED.labels(self.cfg.camera_id).inc()
            self.mailbox.put(frame, datetime.now(timezone.utc))

    # -- publishing side (event loop) --------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        if self.spec.kind == "file" or (self.spec.is_live and not self.cfg.reconnect):
            # fail fast and clearly if the source is not there; a live source is otherwise waited for
            await asyncio.to_thread(lambda: open_capture(self.spec, self.cfg.open_timeout_s,
                                                         rtsp_transport=self.cfg.rtsp_transport).release())
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
                if self.spec.is_live:
                    self.check_stall()
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
