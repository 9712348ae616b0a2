"""Vision and audio detectors on toy graphs that honour the graph contracts; model verification."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from detectors import AudioDetectorConfig, ModelRefused, VisionDetectorConfig, load_detector
from detectors.audio import rms_dbfs
from detectors.imaging import ImageDecodeError
from detectors.testing import toy_vision_model


def _jpeg(h, w, value):
    ok, buf = cv2.imencode(".jpg", np.full((h, w, 3), value, np.uint8))
    return buf.tobytes()


def test_vision_scores_frames_and_maps_boxes(vision_model):
    det = load_detector(VisionDetectorConfig(model=vision_model))
    assert det.has_boxes and (det.input_height, det.input_width) == (64, 64)
    white = det.prepare_jpeg(_jpeg(480, 640, 255), 640, 480)
    black = det.prepare_rgb(np.zeros((64, 64, 3), np.uint8))
    r_white, r_black = det.infer([white, black])
    assert r_white.score > 0.99 and r_black.score < 0.01
    # two overlapping boxes → one after NMS; the 0.1 one is below thresholds.box (0.25)
    assert len(r_white.boxes) == 1
    box = r_white.boxes[0]
    assert box.score == pytest.approx(0.9) and box.label == "drone"
    # letterbox 640x480 → 64x48 at dy=8: y = (0.25*64 - 8) / 48
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx((0.25, 8 / 48, 0.5, 24 / 48), abs=1e-5)
    assert det.ref.name == "toy-vision" and det.report_threshold == 0.5


def test_a_multi_class_head_labels_each_box_with_its_strongest_class(tmp_path):
    path = toy_vision_model(tmp_path / "classes.onnx", classes=True)
    det = load_detector(VisionDetectorConfig(model=path, box_threshold=0.5))
    (res,) = det.infer([det.prepare_rgb(np.zeros((64, 64, 3), np.uint8))])
    # box 0 is a bird (0.9), box 1 a drone (0.8) that overlaps it: one object, one box, the bird;
    # box 2 scores 0.1 at best and is dropped
    assert [(b.label, round(b.score, 2)) for b in res.boxes] == [("bird", 0.9)]
    assert res.other() == ("bird", pytest.approx(0.9)) and res.score < 0.01
    det = load_detector(VisionDetectorConfig(model=path, box_threshold=0.5, nms_iou=0.99))
    (res,) = det.infer([det.prepare_rgb(np.zeros((64, 64, 3), np.uint8))])
    assert [b.label for b in res.boxes] == ["bird", "drone"]


def test_vision_without_box_head_and_threshold_override(toy_dir):
    det = load_detector(VisionDetectorConfig(model=toy_dir / "vision-nobox.onnx", report_threshold=0.9))
    (res,) = det.infer([det.prepare_rgb(np.full((30, 50, 3), 255, np.uint8))])
    assert not det.has_boxes and res.boxes == [] and det.report_threshold == 0.9


def test_vision_jpeg_whose_size_disagrees_with_headers_is_refused(vision_model):
    det = load_detector(VisionDetectorConfig(model=vision_model))
    with pytest.raises(ImageDecodeError, match="headers say 640x480"):
        det.prepare_jpeg(_jpeg(240, 320, 128), 640, 480)


def test_audio_scores_loud_above_silence_and_fits_windows(audio_model):
    det = load_detector(AudioDetectorConfig(model=audio_model))
    t = np.arange(16000) / 16000
    tone = (np.sin(2 * np.pi * 440 * t) * 0.3 * 32767).astype(np.int16)
    scores = det.infer([det.fit(tone, 16000), det.fit(np.zeros(16000, np.int16), 16000)])
    assert scores[0] > 0.99 and scores[1] < 0.01
    assert det.fit(tone[:8000], 16000).shape == (16000,)  # zero-padded at the front
    assert det.fit(np.arange(20000, dtype=np.int16), 16000)[-1] == 19999  # keeps the newest samples
    resampled = det.fit(tone[:4410], 44100 // 10 * 10)
    assert resampled.shape == (16000,) and np.abs(resampled[-1600:]).max() > 1000
    assert rms_dbfs(np.zeros(10, np.int16)) == -120.0
    assert rms_dbfs(np.full(10, 32767, np.int16)) == pytest.approx(0.0, abs=0.01)


def test_model_whose_bytes_do_not_match_the_card_is_refused(tmp_path, vision_model):
    shutil.copy(vision_model, tmp_path / "m.onnx")
    shutil.copy(vision_model.with_suffix(".json"), tmp_path / "m.json")
    with open(tmp_path / "m.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelRefused, match="does not match its card"):
        load_detector(VisionDetectorConfig(model=tmp_path / "m.onnx"))


def test_announced_hash_must_match_too(vision_model):
    with pytest.raises(ModelRefused, match="announced"):
        load_detector(VisionDetectorConfig(model=vision_model), expect_sha256="0" * 64)


def test_wrong_task_missing_model_and_missing_card(tmp_path, vision_model, audio_model):
    with pytest.raises(ModelRefused, match="expected a 'audio' model"):
        load_detector(AudioDetectorConfig(model=vision_model))
    with pytest.raises(ModelRefused, match="make models"):
        load_detector(VisionDetectorConfig(model=tmp_path / "absent.onnx"))
    shutil.copy(audio_model, tmp_path / "nocard.onnx")
    with pytest.raises(ModelRefused, match="no model card"):
        load_detector(AudioDetectorConfig(model=tmp_path / "nocard.onnx"))


def test_card_and_graph_input_size_must_agree(tmp_path):
    path = toy_vision_model(tmp_path / "v.onnx", size=64)
    card = json.loads(path.with_suffix(".json").read_text())
    card["input"]["shape"] = ["batch", 32, 32, 3]
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelRefused, match="card says input 32x32, graph says 64x64"):
        load_detector(VisionDetectorConfig(model=path))


def test_the_serving_path_never_imports_torch():
    code = ("import sys, detectors, detectors.cli, stream_processors.runner, stream_processors.cli; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
