"""The live wall's memory and push rules (console/live.py), without a broker: one mailbox per
browser keeps only the newest event per camera (a slow browser never builds a backlog), a
camera keeps its last few frames, a microphone its last minute of scores, boxes last only
while their detection is fresh."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

from console.live import FRAMES_KEPT, Hub, Lineage, Wall
from skysentry.messages import Box, Detection, FrameEvent, ModelRef, ScoreSummary


def frame(source: str, seq: int) -> FrameEvent:
    return FrameEvent(source=source, site="north", time=datetime.now(timezone.utc), seq=seq, width=64, height=48)


def detection(source: str, modality: str = "vision", score: float = 0.9, captured_at=None) -> Detection:
    now = datetime.now(timezone.utc)
    return Detection(site="north", source=source, modality=modality, score=score,
                     boxes=[Box(x1=0.1, y1=0.1, x2=0.3, y2=0.3, score=score)] if modality == "vision" else [],
                     model=ModelRef(name="m", version="1"), input_event_id=f"in-{score}", input_seq=1,
                     captured_at=captured_at or now, processed_at=now)


def events(messages: list[bytes]) -> list[tuple[str, dict]]:
    out = []
    for m in messages:
        head, data = m.decode().split("\n", 1)
        out.append((head.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_a_slow_browser_gets_the_newest_frame_per_camera_not_a_backlog():
    hub = Hub()
    wall = Wall(hub)
    slow, scores_only = hub.subscribe(frozenset({"frame"})), hub.subscribe(frozenset({"score"}))
    for seq in range(100):
        wall.on_frame(frame("cam-1", seq), b"\xff\xd8\xff%d" % seq)
        wall.on_frame(frame("cam-2", seq), b"\xff\xd8\xff%d" % seq)
    got = events(slow.take())
    assert [(e, d["source"], d["seq"]) for e, d in got] == [("frame", "cam-1", 99), ("frame", "cam-2", 99)]
    assert slow.take() == [] and not slow.ready.is_set()
    assert scores_only.take() == []  # it asked for scores only
    wall.on_frame(frame("cam-1", 100), b"\xff\xd8\xff")
    assert [d["seq"] for _, d in events(slow.take())] == [100]
    hub.unsubscribe(slow)
    wall.on_frame(frame("cam-1", 101), b"\xff\xd8\xff")
    assert slow.take() == []


def test_a_camera_keeps_only_its_last_frames():
    wall = Wall(Hub())
    for seq in range(10):
        wall.on_frame(frame("cam-1", seq), b"jpeg-%d" % seq)
    assert wall.frame("cam-1").seq == 9 and wall.frame("cam-1", 9).jpeg == b"jpeg-9"
    assert wall.frame("cam-1", 10 - FRAMES_KEPT) is not None and wall.frame("cam-1", 9 - FRAMES_KEPT) is None
    assert wall.frame("cam-x") is None


def test_boxes_come_from_the_latest_fresh_detection():
    wall = Wall(Hub(), box_hold_s=0.2)
    wall.on_frame(frame("cam-1", 0), b"j")
    assert wall.camera_view(wall.cameras["cam-1"])["boxes"] == []
    d = detection("cam-1")
    wall.on_detection(d)
    view = wall.camera_view(wall.cameras["cam-1"])
    assert view["boxes"][0]["x1"] == 0.1 and view["detection"]["id"] == d.id and view["url"] == "/frames/cam-1.jpg?seq=0"
    time.sleep(0.25)
    assert wall.camera_view(wall.cameras["cam-1"])["boxes"] == []  # old boxes are not drawn on new frames
    assert wall.lineage.get(d.id)["input_event_id"] == d.input_event_id


def test_a_microphone_keeps_its_last_minute_of_scores():
    hub = Hub()
    box = hub.subscribe()
    wall = Wall(hub, score_window_s=60)
    now = datetime.now(timezone.utc)
    for age, score in ((90, 0.1), (50, 0.2), (10, 0.3)):
        s = ScoreSummary(site="north", source="mic-1", modality="audio", model=ModelRef(name="a", version="1"),
                         window_start=now - timedelta(seconds=age + 1), window_end=now - timedelta(seconds=age),
                         windows=2, max_score=score, mean_score=0.1)
        wall.on_summary(s)
    wall.on_detection(detection("mic-1", "audio", score=0.8, captured_at=now))
    mic = wall.view()["microphones"][0]
    assert mic["source"] == "mic-1" and [round(p[1], 2) for p in mic["scores"]] == [0.2, 0.3, 0.8]
    assert mic["score"] == 0.8
    assert [d["score"] for e, d in events(box.take()) if e == "score"] == [0.8]  # latest wins per microphone


def test_lineage_is_bounded():
    lineage = Lineage(size=3)
    ds = [detection("cam-1", score=0.5 + i / 10) for i in range(5)]
    for d in ds:
        lineage.add(d)
    assert lineage.get(ds[0].id) is None and lineage.get(ds[4].id)["detection_id"] == ds[4].id


def test_closing_the_hub_ends_every_stream():
    hub = Hub()
    box = hub.subscribe()
    hub.close()
    assert box.closed and box.ready.is_set()
