"""The transport-free processor pipelines: every input ends as exactly one outcome, with lineage."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from detectors import AudioDetectorConfig, ModelSlot, VisionDetectorConfig, load_detector
from skysentry.messages import utcnow
from stream_processors.audio import AudioPipeline, AudioProcessorConfig
from stream_processors.core import InputRecord, SummaryBook
from stream_processors.testing import audio_record, frame_record, jpeg, tone
from stream_processors.vision import VisionPipeline, VisionProcessorConfig


def rec(key, value, headers, offset=0, topic="sensor.frames"):
    return InputRecord(topic, 0, offset, key, value, headers)


@pytest.fixture
def vision(vision_model):
    def make(**cfg):
        config = VisionProcessorConfig(detector=VisionDetectorConfig(model=vision_model), **cfg)
        return VisionPipeline(config, ModelSlot(load_detector(config.detector)))
    return make


@pytest.fixture
def audio(audio_model):
    def make(**cfg):
        config = AudioProcessorConfig(detector=AudioDetectorConfig(model=audio_model), **cfg)
        return AudioPipeline(config, ModelSlot(load_detector(config.detector)))
    return make


async def test_positive_frame_becomes_a_detection_with_lineage(vision):
    p = vision()
    key, value, headers, ev = frame_record("cam-9", 17, site="north")
    dark = frame_record("cam-9", 18, data=jpeg(brightness=0), site="north")
    result = await p.process([rec(key, value, headers), rec(*dark[:3], offset=1)])
    assert result.outcomes["inferred"] == 2 and result.total == 2 and not result.dead
    (d,) = result.detections
    assert (d.input_event_id, d.input_seq, d.source, d.site, d.modality) == (ev.id, 17, "cam-9", "north", "vision")
    assert d.captured_at == ev.time and d.processed_at >= ev.time and d.model.name == "toy-vision"
    assert len(d.boxes) == 1 and d.score > 0.99
    (s,) = p.summaries.flush()
    assert (s.source, s.windows, s.skipped) == ("cam-9", 2, 0) and s.max_score > 0.99 > s.mean_score


async def test_a_frame_with_only_a_bird_is_reported_as_a_bird_and_a_drone_wins_a_tie(tmp_path):
    from detectors.testing import toy_vision_model

    path = toy_vision_model(tmp_path / "classes.onnx", classes=True)
    config = VisionProcessorConfig(detector=VisionDetectorConfig(model=path, box_threshold=0.5))
    p = VisionPipeline(config, ModelSlot(load_detector(config.detector)))
    dark = frame_record("cam-1", 1, data=jpeg(brightness=0))  # drone score ~0, a bird box at 0.9
    bright = frame_record("cam-1", 2, data=jpeg(brightness=255))  # drone score ~1 and the same bird
    result = await p.process([rec(*dark[:3]), rec(*bright[:3], offset=1)])
    assert [(d.input_seq, d.label) for d in result.detections] == [(1, "bird"), (2, "drone")]
    assert result.detections[0].score == pytest.approx(0.9) and result.detections[1].score > 0.99
    (s,) = p.summaries.flush()
    assert s.max_score > 0.99 and s.mean_score < 0.6  # summaries carry the drone score only


async def test_stale_frames_are_skipped_and_counted(vision):
    p = vision(max_frame_age_s=2.0)
    old = frame_record(time=utcnow() - timedelta(seconds=10))
    new = frame_record(seq=1)
    result = await p.process([rec(*old[:3]), rec(*new[:3], offset=1)])
    assert result.outcomes["stale"] == 1 and result.outcomes["inferred"] == 1
    assert [d.input_event_id for d in result.detections] == [new[3].id]
    (s,) = p.summaries.flush()
    assert (s.windows, s.skipped) == (1, 1)


async def test_malformed_frames_become_dead_letters_with_reasons(vision):
    p = vision()
    good = frame_record()
    headers = good[2]
    not_jpeg = rec(b"cam-1", b"hello", headers)
    corrupt = rec(b"cam-1", b"\xff\xd8\xff" + bytes(200), headers, 1)
    no_headers = rec(b"cam-1", good[1], [], 2)
    wrong_size = rec(*frame_record(width=640, height=480, data=jpeg(160, 120))[:3], 3)
    result = await p.process([not_jpeg, corrupt, no_headers, wrong_size, rec(*good[:3], 4)])
    reasons = [why for _, why in result.dead]
    assert result.outcomes["dead_lettered"] == 4 and result.outcomes["inferred"] == 1 and len(result.detections) == 1
    assert "not a JPEG" in reasons[0] and "undecodable JPEG" in reasons[2] + reasons[3]
    assert any("missing headers" in r or "ce_type" in r for r in reasons)
    assert any("headers say 640x480" in r for r in reasons)


async def test_motion_gate_skips_repeated_frames_but_refreshes(vision):
    p = vision(motion_gate={"enabled": True, "threshold": 2.0, "refresh_s": 5.0})
    t0 = utcnow()
    same = jpeg(brightness=200)
    frames = [frame_record(seq=i, data=same, time=t0 + timedelta(seconds=i)) for i in range(7)]
    frames.append(frame_record(seq=7, data=jpeg(brightness=40), time=t0 + timedelta(seconds=7)))
    result = await p.process([rec(*f[:3], offset=i) for i, f in enumerate(frames)])
    # frame 0 (first), 5 (refresh after 5 s), 7 (motion) pass; 1-4 and 6 are gated
    assert result.outcomes["gated"] == 5 and result.outcomes["inferred"] == 3 and result.gated_by["motion"] == 5


async def test_audio_window_detection_silence_and_bad_payload(audio):
    p = audio()
    loud = audio_record("mic-3", 5)
    quiet = audio_record("mic-3", 6, pcm=np.zeros(16000, np.int16))
    key, value, headers, _ = audio_record("mic-3", 7)
    short = rec(key, value[:-2], headers, 2)
    result = await p.process([rec(*loud[:3]), rec(*quiet[:3], 1), short])
    assert result.outcomes["inferred"] == 2 and result.outcomes["dead_lettered"] == 1
    (d,) = result.detections
    assert (d.input_event_id, d.modality, d.source) == (loud[3].id, "audio", "mic-3")
    assert "audio payload is" in result.dead[0][1]


async def test_audio_is_read_by_its_declared_format_not_its_length(audio):
    """A big-endian audio/L16 window scores as its little-endian twin; a float32 window of the
    same byte length, declared as such, is dead-lettered with the reason."""
    p = audio()
    key, value, headers, _ = audio_record("mic-4", 0)
    be = np.frombuffer(value, "<i2").astype(">i2").tobytes()
    l16 = [(k, b"audio/L16;rate=16000;channels=1" if k == "content-type" else v) for k, v in headers]
    f32 = np.frombuffer(value, "<i2")[:8000].astype("<f4").tobytes()
    assert len(f32) == len(value)
    floats = [(k, b"audio/x-raw;format=F32LE;rate=16000;channels=1" if k == "content-type" else v) for k, v in headers]
    result = await p.process([rec(key, value, headers), rec(key, be, l16, 1), rec(key, f32, floats, 2)])
    assert result.outcomes["inferred"] == 2 and len(result.dead) == 1
    a, b = result.detections
    assert a.score == pytest.approx(b.score)
    assert "invalid audio window" in result.dead[0][1] and "float samples are not accepted" in result.dead[0][1]


async def test_level_gate_and_other_sample_rates(audio):
    p = audio(level_gate={"enabled": True, "min_dbfs": -40.0, "refresh_s": 60})
    t0 = utcnow()
    first_quiet = audio_record(seq=0, pcm=np.zeros(16000, np.int16), time=t0)
    quiet = audio_record(seq=1, pcm=np.zeros(16000, np.int16), time=t0 + timedelta(seconds=1))
    loud_44k = audio_record(seq=2, pcm=tone(44100, rate=44100), rate=44100, time=t0 + timedelta(seconds=2))
    result = await p.process([rec(*r[:3], offset=i) for i, r in enumerate((first_quiet, quiet, loud_44k))])
    assert result.outcomes["gated"] == 1 and result.outcomes["inferred"] == 2
    assert [d.input_seq for d in result.detections] == [2]


async def test_a_model_that_fails_on_one_input_only_dead_letters_that_one(vision, monkeypatch):
    p = vision()
    det = p.slot.current
    real = det.infer

    def flaky(frames):
        if any(f.tensor[32, 32].max() < 10 for f in frames):
            raise RuntimeError("boom")
        return real(frames)

    monkeypatch.setattr(det, "infer", flaky)
    frames = [frame_record(seq=0), frame_record(seq=1, data=jpeg(brightness=0)), frame_record(seq=2)]
    result = await p.process([rec(*f[:3], offset=i) for i, f in enumerate(frames)])
    assert result.outcomes["inferred"] == 2 and result.outcomes["dead_lettered"] == 1
    assert "inference failed: RuntimeError: boom" in result.dead[0][1]


async def test_a_batch_that_cannot_be_assembled_is_run_one_by_one(audio, monkeypatch):
    p = audio()
    real = p.assemble

    def picky(detector, inputs):
        if len(inputs) > 1:
            raise ValueError("windows of different shapes")
        return real(detector, inputs)

    monkeypatch.setattr(p, "assemble", picky)
    result = await p.process([rec(*audio_record(seq=i)[:3], offset=i) for i in range(3)])
    assert result.outcomes["inferred"] == 3 and not result.dead
    assert [d.input_seq for d in result.detections] == [0, 1, 2]


async def test_queued_batches_run_back_to_back_on_one_thread_without_the_event_loop(audio, monkeypatch):
    """The runner queues batch k+1 while batch k is inferred: the inference thread must go
    from one model run to the next on its own, in queue order, while the loop is busy."""
    import threading
    import time

    p = audio()
    det = p.slot.current
    real, runs = det.run_batch, []

    def recorded(batch, n):
        runs.append((n, threading.current_thread().name))
        return real(batch, n)

    monkeypatch.setattr(det, "run_batch", recorded)
    batches = [await p.prepare([rec(*audio_record(seq=10 * b + i)[:3], offset=10 * b + i) for i in range(n)])
               for b, n in enumerate((1, 2, 3))]
    for b in batches:
        p.start_inference(b)
    time.sleep(1.0)  # the event loop is blocked: nothing on it can start a model run
    assert all(b.run.done() for b in batches)
    assert [n for n, _ in runs] == [1, 2, 3] and len({t for _, t in runs}) == 1 and runs[0][1] != "MainThread"
    results = [await p.finish(b) for b in batches]
    assert [[d.input_seq for d in r.detections] for r in results] == [[0], [10, 11], [20, 21, 22]]


def test_summary_book_groups_by_source_and_resets():
    from skysentry.messages import ModelRef

    book, ref = SummaryBook("audio"), ModelRef(name="m", version="1")
    book.scored("s", "mic-1", 0.2, ref)
    book.scored("s", "mic-1", 0.6, ref)
    book.skipped("s", "mic-2", ref)
    a, b = book.flush()
    assert (a.source, a.windows, a.max_score, a.mean_score) == ("mic-1", 2, 0.6, pytest.approx(0.4))
    assert (b.source, b.windows, b.skipped, b.mean_score) == ("mic-2", 0, 1, 0.0)
    assert book.flush() == []
