"""The live wall on the real broker: frames published to the frames topic reach the console's
API and its event stream as the latest frame per camera with a rising sequence number, at the
camera's rate (>= 2 updates/s), with the boxes of the camera's latest detection; a backlog
written before the console started is never replayed; a microphone's score summaries make its
last-minute score line."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone

import cv2
import httpx
import numpy as np
import pytest

from skysentry.messages import Box, FrameEvent, ModelRef, ScoreSummary, encode_frame

pytestmark = pytest.mark.integration


def jpeg(i: int) -> bytes:
    img = np.full((96, 128, 3), (i * 37) % 255, np.uint8)
    cv2.putText(img, str(i), (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 2)
    return cv2.imencode(".jpg", img)[1].tobytes()


async def publish_frame(producer, topic: str, source: str, seq: int) -> FrameEvent:
    event = FrameEvent(source=source, site="north", time=datetime.now(timezone.utc), seq=seq, width=128, height=96)
    key, value, headers = encode_frame(event, jpeg(seq))
    await producer.send_and_wait(topic, value, key=key, headers=headers)
    return event


async def read_events(url: str, out: list, kinds: str) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as http:
        async with http.stream("GET", f"{url}/events?kinds={kinds}") as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            event = None
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    out.append((time.monotonic(), event, json.loads(line[6:])))


async def test_frames_reach_the_wall_live_with_boxes_and_no_backlog(make_settings, console_server, producer, topics,
                                                                   kit):
    for seq in range(5):  # written before the console starts: history, not the wall
        await publish_frame(producer, topics.frames, "cam-old", seq)
    server = console_server(make_settings())
    await server.wait_reading()
    events: list = []
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        stream = asyncio.create_task(read_events(server.url, events, "frame,score"))
        await asyncio.sleep(0.5)
        sent: dict[int, FrameEvent] = {}
        box = Box(x1=0.2, y1=0.3, x2=0.5, y2=0.6, score=0.91, label="drone")
        t0 = time.monotonic()
        for seq in range(15):  # 3 s at 5 fps
            sent[seq] = await publish_frame(producer, topics.frames, "cam-1", seq)
            if seq == 6:  # the processor saw a drone in frame 6
                f = sent[6]
                await kit.send(producer, topics.detections, kit.detection("north", "cam-1", seq=6, input_event_id=f.id,
                                                                          captured_at=f.time, boxes=[box]), "cam-1")
            await asyncio.sleep(max(0.0, t0 + 0.2 * (seq + 1) - time.monotonic()))
        now = datetime.now(timezone.utc)
        for i in range(3):  # a microphone's processor reports once a second
            s = ScoreSummary(site="north", source="mic-1", modality="audio", model=ModelRef(name="audio-drone", version="2"),
                             window_start=now - timedelta(seconds=3 - i), window_end=now - timedelta(seconds=2 - i),
                             windows=2, max_score=0.1 + 0.3 * i, mean_score=0.1)
            await kit.send(producer, topics.detections, s, "mic-1")

        async def wall_done():
            wall = (await http.get("/api/wall")).json()
            cams = {c["source"]: c for c in wall["cameras"]}
            mics = {m["source"]: m for m in wall["microphones"]}
            return (cams.get("cam-1", {}).get("seq") == 14 and len(mics.get("mic-1", {}).get("scores", [])) == 3
                    and (cams, mics))

        cams, mics = await kit.wait_until(wall_done, timeout=10, what="the last frame and the scores on the wall")
        await asyncio.sleep(0.3)
        stream.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stream

        assert set(cams) == {"cam-1"}  # the backlog camera never appears
        assert mics["mic-1"]["score"] == pytest.approx(0.7) and [round(p[1], 2) for p in mics["mic-1"]["scores"]] == [
            0.1, 0.4, 0.7]
        latest = await http.get("/frames/cam-1.jpg?seq=14")
        assert latest.status_code == 200 and latest.content == jpeg(14) and latest.headers["content-type"] == "image/jpeg"
        assert (await http.get("/frames/cam-1.jpg")).headers["x-frame-seq"] == "14"
        assert (await http.get("/frames/cam-1.jpg?seq=0")).status_code == 404  # only the latest few are kept
        assert (await http.get("/frames/cam-old.jpg")).status_code == 404

    frames = [(t, d) for t, e, d in events if e == "frame" and d["source"] == "cam-1"]
    seqs = [d["seq"] for _, d in frames]
    assert seqs == sorted(set(seqs)) and seqs[-1] == 14, seqs  # rising, newest last, nothing twice
    span = frames[-1][0] - frames[0][0]
    assert len(frames) >= 2 * span and len(frames) >= 8, (len(frames), span)  # >= 2 updates/s while frames flow
    boxed = [d for _, d in frames if d["boxes"]]
    assert boxed and boxed[0]["seq"] >= 6 and boxed[0]["boxes"][0]["x1"] == pytest.approx(0.2)
    assert boxed[0]["detection"]["input_event_id"] == sent[6].id
    assert all(d["url"] == f"/frames/cam-1.jpg?seq={d['seq']}" for _, d in frames)
    scores = [d["score"] for _, e, d in events if e == "score" and d["source"] == "mic-1"]
    assert scores and scores[-1] == pytest.approx(0.7)
