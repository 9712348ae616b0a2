"""`skysentry topics`, and the camera's real-time pacing."""

import asyncio
import os
import subprocess
import sys
import uuid

from producers.camera import CameraProducer
from skysentry.config import CameraSettings
from skysentry.synthetic import SyntheticScene, write_scene_video
from skysentry.topics import describe_topics


def test_topics_create_is_idempotent_and_describe_shows_them(stack, kafka):
    suffix = uuid.uuid4().hex[:8]
    env = os.environ | {"SKYSENTRY_TOPICS__FRAMES": f"cli.frames.{suffix}",
                        "SKYSENTRY_TOPICS__MODELS": f"cli.models.{suffix}"}
    cmd = [sys.executable, "-m", "skysentry.cli", "topics"]
    first = subprocess.run([*cmd, "create", "--partitions", "3"], env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert f"cli.frames.{suffix}" in first.stderr and f"cli.frames.{suffix}.dlq" in first.stderr
    again = subprocess.run([*cmd, "create"], env=env, capture_output=True, text=True, timeout=60)
    assert "created 0 topic(s)" in again.stderr
    desc = subprocess.run([*cmd, "describe", f"cli.frames.{suffix}"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert desc.returncode == 0 and f"cli.frames.{suffix}" in desc.stdout and " 3 " in desc.stdout
    meta = asyncio.run(describe_topics(kafka, [f"cli.models.{suffix}"]))
    assert meta[0]["partitions"] == 1  # the compacted models topic has one partition


async def test_a_faster_source_is_thinned_not_queued(kafka, topics, tmp_path):
    """A 25 fps file replayed for 2 s with a 5 fps target: about 10 frames go out, the rest
    are dropped at the source (counted), none pile up."""
    video = write_scene_video(tmp_path / "fast.mp4", SyntheticScene(width=160, height=90, fps=25), seconds=2)
    cam = CameraProducer(CameraSettings(source=str(video), camera_id="cam-fast", fps=5), kafka, topics)
    await asyncio.wait_for(cam.run(asyncio.Event()), 60)
    assert 7 <= cam.publisher.stats.published <= 13
    assert cam.mailbox.overwritten >= 30  # ~50 frames read, ~10 taken
