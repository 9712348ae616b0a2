"""``skysentry detect`` on an image, a video and a WAV; ``skysentry process`` flag → settings mapping."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from detectors.cli import app as detect_app
from stream_processors.cli import settings_from_cli

runner = CliRunner()


def test_detect_image_text_and_json(tmp_path, vision_model):
    img = tmp_path / "sky.png"
    cv2.imwrite(str(img), np.full((120, 160, 3), 255, np.uint8))
    res = runner.invoke(detect_app, [str(img), "--model", str(vision_model)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("image: score=0.99") and "DRONE" in res.output and "boxes=[" in res.output
    res = runner.invoke(detect_app, [str(img), "-m", str(vision_model), "--json"])
    (row,) = [json.loads(line) for line in res.output.splitlines()]
    assert row["kind"] == "image" and row["detected"] is True and row["model"] == "toy-vision@1"
    assert row["boxes"][0]["score"] == 0.9 and (row["width"], row["height"]) == (160, 120)


def test_detect_video_prints_one_line_per_frame(tmp_path, vision_model):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 0 if i < 3 else 255, np.uint8))
    writer.release()
    res = runner.invoke(detect_app, [str(path), "-m", str(vision_model), "--json", "--batch", "2"])
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["detected"] for r in rows] == [False, False, False, True, True]
    assert rows[1]["t"] == pytest.approx(0.1)


def test_detect_wav_scores_1s_windows_with_half_second_hop(tmp_path, audio_model):
    t = np.arange(32000) / 16000
    pcm = (np.sin(2 * np.pi * 300 * t) * 0.3 * 32767).astype(np.int16)
    pcm[16000:] = 0
    path = tmp_path / "field.wav"
    sf.write(path, pcm, 16000)
    res = runner.invoke(detect_app, [str(path), "-m", str(audio_model), "--json"])
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert [r["t"] for r in rows] == [0.0, 0.5, 1.0]
    assert [r["detected"] for r in rows] == [True, True, False]


def test_detect_errors_say_what_to_do(tmp_path, vision_model):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000, np.int16), 16000)
    res = runner.invoke(detect_app, [str(wav), "--model", str(tmp_path / "missing.onnx")])
    assert res.exit_code == 2 and "make models" in res.output
    res = runner.invoke(detect_app, [str(wav), "--model", str(vision_model)])
    assert res.exit_code == 2 and "expected a 'audio' model" in res.output
    odd = tmp_path / "notes.txt"
    odd.write_text("hi")
    res = runner.invoke(detect_app, [str(odd)])
    assert res.exit_code == 2 and "cannot tell what notes.txt is" in res.output


def test_process_flags_override_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    cfg = tmp_path / "s.yaml"
    cfg.write_text("vision_processor:\n  max_batch: 4\n  max_wait_s: 0.5\ntopics:\n  frames: cams\n")
    s = settings_from_cli("vision", cfg, "k1:9092,k2:9092",
                          {"group_id": "g7", "max_batch": 16, "max_wait_s": None, "max_frame_age_s": 2.0},
                          {"model": tmp_path / "m.onnx", "report_threshold": 0.7}, {"intra_op_threads": 2,
                                                                                   "providers": None},
                          {"frames": None, "detections": "dets"}, 0)
    v = s.vision_processor
    assert s.kafka.bootstrap_servers == "k1:9092,k2:9092" and s.topics.frames == "cams" and s.topics.detections == "dets"
    assert (v.group_id, v.max_batch, v.max_wait_s, v.max_frame_age_s) == ("g7", 16, 0.5, 2.0)
    assert v.detector.model == tmp_path / "m.onnx" and v.detector.report_threshold == 0.7
    assert v.detector.session.intra_op_threads == 2 and v.detector.session.providers == "auto"
    assert s.input_topic("vision") == "cams" and s.metrics.port == 0


def test_processor_sections_read_the_environment(monkeypatch):
    monkeypatch.setenv("SKYSENTRY_AUDIO_PROCESSOR__MAX_BATCH", "32")
    monkeypatch.setenv("SKYSENTRY_AUDIO_PROCESSOR__LEVEL_GATE__ENABLED", "true")
    s = settings_from_cli("audio", None, None, {}, {}, {}, {}, None)
    assert s.audio_processor.max_batch == 32 and s.audio_processor.level_gate.enabled
    assert s.vision_processor.max_batch == 8  # the other section keeps its defaults


def test_default_models_are_found_from_any_working_directory(tmp_path):
    """`skysentry process vision|audio` and `skysentry detect` started outside the repository
    find the shipped models: the defaults name the project's models/, not the working directory."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSENTRY_")}
    script = ("from stream_processors.cli import settings_from_cli\n"
              "from detectors.registry import load_detector\n"
              "for m in ('vision', 'audio'):\n"
              "    s = settings_from_cli(m, None, None, {}, {'model': None}, {}, {}, None)\n"
              "    d = load_detector(getattr(s, m + '_processor').detector)\n"
              "    print(m, d.card.name, getattr(s, m + '_processor').detector.model)\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["vision", "audio"]
    assert all(Path(line.split()[2]) in ((root / "models" / "vision.onnx"), (root / "models" / "audio.onnx"))
               for line in lines)

    img = tmp_path / "sky.png"
    cv2.imwrite(str(img), np.full((120, 160, 3), 200, np.uint8))
    skysentry = Path(sys.executable).parent / "skysentry"
    res = subprocess.run([str(skysentry), "detect", "sky.png", "--json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[0])["kind"] == "image"
