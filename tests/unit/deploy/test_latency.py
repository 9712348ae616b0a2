"""The demo's latency breakdown from known timestamps (deploy/local/latency.py, RunReport)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from alerting.testing import Received
from deploy.local.demo import latency_note, latency_table, notification_table
from deploy.local.latency import STAGES, Notified, Times, breakdown, notify_breakdown, tail_size
from deploy.local.pipeline import Observed, RunReport
from skysentry.messages import Detection, ModelRef, ProcessingTimes

T0 = datetime(2026, 12, 2, 12, 0, 0, tzinfo=timezone.utc)


def ms(n: float) -> datetime:
    return T0 + timedelta(milliseconds=n)


def detection(i: int, offset: float, *, received: float | None = 15, modality: str = "vision",
              timing: bool = True) -> Detection:
    """Captured at T0 + offset; fetched +15, batch +40, model +70, done +100 (ms after capture)."""
    times = ProcessingTimes(received_at=None if received is None else ms(offset + received),
                            batch_started_at=ms(offset + 40), inference_started_at=ms(offset + 70),
                            inference_ended_at=ms(offset + 100), batch_size=4)
    return Detection(id=f"d{i}", site="s", source="cam", modality=modality, score=0.9,
                     model=ModelRef(name="m", version="1"), input_event_id=f"in{i}", captured_at=ms(offset),
                     processed_at=ms(offset + 101), timing=times if timing else None)


def times(d: Detection, logged: float = 5, published: float = 110, read: float = 130) -> Times:
    base = (d.captured_at - T0).total_seconds() * 1000
    return Times.of(d, ms(base + logged), ms(base + published), ms(base + read))


def test_stages_of_one_detection_add_up_to_its_total():
    t = times(detection(1, 0))
    stages = t.stages_ms()
    assert list(stages) == [s for s in STAGES if s != "window length"]  # a frame has no window
    assert stages == pytest.approx({"producer → broker": 5, "queue wait": 10, "batch wait": 25,
                                    "decode + model queue": 30, "inference": 30, "publish": 10, "output": 20})
    assert sum(stages.values()) == pytest.approx(t.total_ms) == pytest.approx(130)


def test_an_audio_window_is_stamped_with_its_first_sample():
    d = detection(1, 0, modality="audio")
    base = Times.of(d, ms(1030), ms(1130), ms(1150), window_s=1.0)
    # the window, then the producer's 30 ms; the processor's stages as before (shifted: received +15)
    assert base.stages_ms()["window length"] == pytest.approx(1000)
    assert base.stages_ms()["producer → broker"] == pytest.approx(30)
    early = Times.of(d, ms(700), None, None, window_s=1.0)  # released before its end (a paced file)
    assert early.stages_ms()["window length"] == pytest.approx(700)
    assert early.stages_ms()["producer → broker"] == pytest.approx(0)


def test_without_receive_time_queue_wait_runs_to_the_batch_and_batch_wait_is_unknown():
    stages = times(detection(1, 0, received=None)).stages_ms()
    assert stages["queue wait"] == pytest.approx(35)
    assert "batch wait" not in stages
    assert sum(stages.values()) == pytest.approx(130)


def test_an_older_processor_without_timing_gives_only_the_outer_stages():
    stages = times(detection(1, 0, timing=False)).stages_ms()
    assert set(stages) == {"producer → broker", "output"}


def test_breakdown_percentiles_and_the_tail_say_where_the_slowest_time_went():
    # 200 detections at 130 ms, 3 whose batch wait was 500 ms longer (read 500 ms later)
    dets = [times(detection(i, i * 200)) for i in range(200)]
    slow = [Times(ms(b), ms(b + 5), ms(b + 15), ms(b + 540), ms(b + 570), ms(b + 600), ms(b + 610), ms(b + 630))
            for b in (i * 200 for i in range(200, 203))]
    b = breakdown("vision", dets + slow)
    assert b.n == 203 and b.tail_n == tail_size(203) == 3
    assert b.total.p50 == pytest.approx(130)
    assert b.total.p99 == pytest.approx(630)  # nearest rank: 0.99 x 202 → index 200, a slow one
    assert b.total.tail_mean == pytest.approx(630)
    assert b.row("batch wait").p50 == pytest.approx(25)
    assert b.row("batch wait").tail_mean == pytest.approx(525)
    assert b.row("inference").tail_mean == pytest.approx(30)
    assert sum(r.tail_mean for r in b.stages if r.n) == pytest.approx(b.total.tail_mean)
    note = latency_note([b])
    assert "vision: p99 630 ms" in note and "525 ms is batch wait" in note
    assert latency_table([b]).row_count == len(STAGES)  # the total, no window length for frames


def test_unread_detections_are_left_out():
    d = detection(1, 0)
    b = breakdown("audio", [Times.of(d, ms(5), ms(110), None)])
    assert b.n == 0 and b.total.p99 is None


def test_notification_split_at_the_newest_detection():
    items = [Notified("audio", ms(0), ms(120), ms(1620)), Notified("audio", ms(0), ms(300), ms(1300)),
             Notified("vision", ms(0), None, ms(2000))]
    out = notify_breakdown(items)
    assert out["audio"]["total"] == (pytest.approx(1300), pytest.approx(1620), 2)
    assert out["audio"]["capture → detection published"][1] == pytest.approx(300)
    assert out["audio"]["detection → webhook (alerting)"][2] == 2
    assert set(out["vision"]) == {"total"}  # the detection's record time was not seen
    assert notification_table(out).row_count == 4


def test_run_report_joins_the_watchers_timestamps():
    """RunReport gathers the input's and the detection's record times and the read time per
    detection, and the webhook's delivery time per firing."""
    seen = Observed()
    d = detection(1, 0)
    a = detection(2, 0, modality="audio")
    for det in (d, a):
        seen.inputs[det.input_event_id] = ("sensor.frames", det.captured_at)
        seen.input_logged_at[det.input_event_id] = ms(5)
        seen.detections[det.id] = det
        seen.detection_logged_at[det.id] = ms(110)
        seen.detection_read_at[det.id] = ms(130)
    body = (b'{"event": "firing", "alert": {"detection_ids": ["d1", "d2"]}}')
    hook = Received("POST", "/webhook", {}, body, ms(1500).timestamp(), 200)
    report = RunReport(observed=seen, notifications=[hook], webhook_secret="x", log_dir=Path("."), producers={},
                       services={}, service_errors={})
    [audio, vision] = report.detection_breakdowns()
    assert (audio.modality, vision.modality) == ("audio", "vision")
    assert vision.total.p50 == pytest.approx(130)
    assert vision.row("batch wait").p50 == pytest.approx(25)
    notified = report.notification_breakdowns()
    assert list(notified) == ["vision"]  # both captured at once: the first newest wins
    assert notified["vision"]["detection → webhook (alerting)"][0] == pytest.approx(1390)
