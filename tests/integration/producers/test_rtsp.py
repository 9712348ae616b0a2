"""A real RTSP camera (npm rtsp-streaming-server + ffmpeg publishing a real clip, both on
loopback, deploy/local/rtsp.py) under the faults of issue 17: a stalled publisher, the whole
camera lost and back, a camera that is down when the producer starts, and each reason a
stream cannot be opened, said in words. Kafka is the session's real broker."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.local.rtsp import RtspCamera, free_port
from producers.camera import RECONNECTS, CameraProducer, SourceSpec, SourceUnavailable, open_capture
from producers.diagnose import Cause
from producers.health import SourceState
from skysentry.config import CameraSettings
from skysentry.metrics import HEALTH
from skysentry.messages import decode_frame

from .conftest import consume_all

CLIP = Path(__file__).parents[3] / "samples" / "V_DRONE_067.mp4"
FPS = 5.0


@pytest.fixture
def camera(tmp_path):
    cam = RtspCamera(tmp_path / "rtsp", CLIP, user="viewer", password="s3cret-pw")
    yield cam
    cam.stop()


def settings(cam: RtspCamera, **extra) -> CameraSettings:
    return CameraSettings(source=cam.url(), camera_id=f"cam-rtsp-{cam.client_port}", fps=FPS, rtsp_transport="udp",
                          **extra)


class Running:
    """A CameraProducer on the test's event loop, with what it published sampled every 20 ms."""

    def __init__(self, producer: CameraProducer) -> None:
        self.producer, self.stop = producer, asyncio.Event()
        self.task = asyncio.create_task(producer.run(self.stop))

    async def until(self, predicate, timeout_s: float, what: str) -> float:
        """Wait for ``predicate()``; return the monotonic time it became true."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert not self.task.done(), f"the camera producer exited: {self.task.exception()!r}"
            assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
            await asyncio.sleep(0.02)
        return time.monotonic()

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


def readiness_of(producer: CameraProducer) -> str:
    """The producer's line in /readyz (skysentry.metrics.HEALTH) for its source."""
    return next(line for line in HEALTH.readiness()[1] if producer.health.condition in line)


def down_lines(caplog, camera_id: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "producers.health" and r.getMessage().startswith(f"camera {camera_id} down")]


async def test_a_stalled_stream_goes_stale_within_two_intervals_and_old_frames_are_never_published(camera, kafka,
                                                                                                    topics):
    camera.start()
    producer = CameraProducer(settings(camera, read_timeout_s=2.0, max_lag_s=1.0), kafka, topics)
    run = Running(producer)
    try:
        await run.until(lambda: producer.seq >= 5 and producer.health.is_live, 20, "frames from the camera")
        camera.freeze()  # the publisher stops sending; the server and the session stay up
        frozen_at = time.monotonic()
        stale_at = await run.until(lambda: producer.health.state != SourceState.LIVE, 5, "the stall to be seen")
        assert producer.health.state == SourceState.STALE
        # two frame intervals (0.4 s at 5 fps) plus at most one publishing tick (0.2 s)
        assert stale_at - frozen_at < 2 * (1 / FPS) + 1 / FPS + 0.3, stale_at - frozen_at
        published_when_stale = producer.seq
        await asyncio.sleep(4.0)  # past the read timeout: the decoder flushes old frames, the camera is reopened
        assert producer.seq == published_when_stale, "frames were published while the stream was frozen"
        assert producer.health.state in (SourceState.STALE, SourceState.DOWN)

        camera.thaw()
        thawed_at = time.monotonic()
        resumed_at = await run.until(lambda: producer.seq > published_when_stale and producer.health.is_live, 15,
                                     "frames after the stream resumed")
        print(f"stale after {stale_at - frozen_at:.2f} s; frames again {resumed_at - thawed_at:.2f} s after thaw")
    finally:
        await run.close()

    records = await consume_all(kafka, topics.frames, producer.seq)
    times = [decode_frame(r.value, r.headers).time for r in sorted(records, key=lambda r: r.offset)]
    assert len(times) == producer.seq
    assert times == sorted(times) and len(set(times)) == len(times), "capture times must be the read times, each new"


async def test_the_camera_lost_and_back_resumes_within_seconds_with_one_line_per_cause(camera, kafka, topics,
                                                                                        caplog):
    caplog.set_level(logging.INFO)
    camera.start()
    cfg = settings(camera, read_timeout_s=1.0)
    producer = CameraProducer(cfg, kafka, topics)
    reconnects = RECONNECTS.labels(cfg.camera_id)._value.get()
    run = Running(producer)
    try:
        await run.until(lambda: producer.seq >= 5, 20, "frames from the camera")
        camera.stop_publisher()
        camera.stop_server()  # kill -9 of the whole camera
        await run.until(lambda: producer.health.state == SourceState.DOWN, 10, "the loss to be seen")
        await asyncio.sleep(3.0)  # a dozen retries against a refused port
        seq_down = producer.seq
        camera.start_server()
        camera.start_publisher()
        back_at = time.monotonic()  # the stream is announced again
        resumed_at = await run.until(lambda: producer.seq > seq_down + 2, 15, "frames after the camera came back")
        # at worst one retry delay (capped at reconnect_max_s) plus an open (~0.6 s)
        limit = cfg.reconnect_max_s + 1.5
        assert resumed_at - back_at < limit, f"frames resumed {resumed_at - back_at:.2f} s after the camera was back"
        print(f"first frames {resumed_at - back_at:.2f} s after the stream was announced again")
    finally:
        await run.close()
    lines = down_lines(caplog, cfg.camera_id)
    assert any("connection refused" in line for line in lines), lines
    assert len(lines) == len(set(lines)) <= 4, f"one line per cause, not one per retry: {lines}"
    assert all("s3cret-pw" not in r.getMessage() for r in caplog.records)
    assert RECONNECTS.labels(cfg.camera_id)._value.get() > reconnects


async def test_a_camera_down_at_start_is_waited_for(camera, kafka, topics, caplog):
    caplog.set_level(logging.INFO)
    producer = CameraProducer(settings(camera), kafka, topics)
    run = Running(producer)
    try:
        await asyncio.sleep(2.0)  # several tries from 0.25 s, doubling up to 2 s
        assert not run.task.done(), "the producer gave up on a camera that is not up yet"
        assert producer.health.state == SourceState.DOWN
        assert readiness_of(producer).startswith("fail "), "/readyz must fail while the camera is down"
        assert down_lines(caplog, producer.cfg.camera_id) == [
            f"camera {producer.cfg.camera_id} down: cannot open camera source {camera.url(credentials=False)}"
            .replace("rtsp://", "rtsp://viewer:***@") + ": connection refused; nothing listens at that address "
            "and port: is the camera (or its RTSP server) up?"]
        camera.start()
        await run.until(lambda: producer.seq >= 3 and producer.health.is_live, 15, "frames once the camera is up")
        assert readiness_of(producer).startswith("ok ")
    finally:
        await run.close()


def test_each_reason_a_stream_cannot_be_opened_is_said_in_words(camera):
    camera.start()
    spec = lambda url: SourceSpec.parse(url)  # noqa: E731
    cases = {
        Cause.UNAUTHORISED: (camera.url().replace("s3cret-pw", "wrong-pw"), "udp"),
        Cause.NOT_FOUND: (camera.url().replace("/cam", "/no-such-stream"), "udp"),
        Cause.UNSUPPORTED_TRANSPORT: (camera.url(), "tcp"),  # this server relays RTP over UDP only
        Cause.REFUSED: (f"rtsp://viewer:s3cret-pw@127.0.0.1:{free_port()}/cam", "udp"),
    }
    for cause, (url, transport) in cases.items():
        with pytest.raises(SourceUnavailable) as err:
            open_capture(spec(url), 3.0, rtsp_transport=transport)
        assert err.value.cause == cause, (cause, str(err.value))
        assert cause.value in str(err.value) and "s3cret" not in str(err.value) and "wrong-pw" not in str(err.value)
    open_capture(spec(camera.url()), 3.0, rtsp_transport="udp").release()  # and the right one opens


def test_the_cli_logs_causes_as_json_lines_without_ffmpeg_chatter_and_one_shot_exits_2(camera, stack):
    camera.start()
    env = dict(os.environ, SKYSENTRY_CAMERA__RTSP_TRANSPORT="udp", SKYSENTRY_METRICS__ENABLED="false")
    cmd = [sys.executable, "-m", "skysentry.cli", "camera", "--source", camera.url().replace("/cam", "/nope"),
           "--bootstrap", stack.bootstrap_servers]
    # retrying (the default): a few seconds of "not found", then SIGTERM
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert all(line.startswith("{") for line in lines), f"raw FFmpeg/OpenCV lines in the log: {lines}"
    logged = [json.loads(line) for line in lines]
    down = [entry for entry in logged if entry.get("state") == "down"]
    assert len(down) == 1 and down[0]["level"] == "warning" and "not found (RTSP 404)" in down[0]["msg"], down
    assert "s3cret-pw" not in err
    # one-shot: the same source is an error, exit code 2, the cause in words
    out = subprocess.run([*cmd, "--once"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "not found (RTSP 404)" in out.stdout + out.stderr
    assert "[rtsp @" not in out.stderr and "WARN:" not in out.stderr, out.stderr
    assert "s3cret-pw" not in out.stdout + out.stderr
