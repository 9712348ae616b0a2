"""Field evaluation (trainer/field_eval.py) on a tiny video dataset whose answers are known.

Six 2 s clips (64x64, 30 fps, 60 frames) encode what a stub detector sees in each frame's
brightness, so every metric can be worked out by hand. The stub boxes a 16x16 square at
(16, 16) px, where the labels put the drone (IoU 1), or a square elsewhere (IoU 0):

    level   stub result                        used in
    20      score 0.05, no box                 "nothing there"
    100     score 0.95, box elsewhere (0.65)   drone clip 2: detected, but the box is wrong
    170     score 0.95, box on target (0.70)   confuser clips: a drone false alarm
    235     score 0.95, box on target (0.90)   drone clips 1 and 3: a hit

At --fps 5 the camera sends every 6th frame (10 windows a clip); the alerting rule (3 of 5)
runs in a real Redis (a throwaway redis-server, or REDIS_URL).
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from skysentry.messages import Box
from trainer.cli import app
from trainer.data import list_items
from trainer.field_eval import FrameScore, alerting_redis, clip_metrics, confirm_clips, evaluate_video, frame_metrics

FRAMES, SIZE, LABEL_PX = 60, 64, (16, 16, 16, 16)
ON_TARGET = (0.25, 0.25, 0.5, 0.5)
ELSEWHERE = (0.6, 0.6, 0.9, 0.9)
needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server missing (make setup)")


def _levels(bright: set[int], level: int) -> list[int]:
    return [level if i in bright else 20 for i in range(FRAMES)]


# clip → (class, distance bin, brightness of each frame)
CLIPS = {
    "drone/V_DRONE_001.mp4": ("drone", "close", _levels(set(range(FRAMES)), 235)),  # every frame a hit
    "drone/V_DRONE_002.mp4": ("drone", "distant", _levels(set(range(FRAMES)), 100)),  # detected, wrong box
    # hits at frames 0-5 and 30-38: camera windows 0, 5, 6 → never 3 of 5 → no alert
    "drone/V_DRONE_003.mp4": ("drone", "medium", _levels(set(range(6)) | set(range(30, 39)), 235)),
    "bird/V_BIRD_001.mp4": ("bird", "", _levels(set(range(6)), 170)),  # one isolated window (0)
    "airplane/V_AIRPLANE_001.mp4": ("airplane", "", _levels(set(), 170)),
    "helicopter/V_HELICOPTER_001.mp4": ("helicopter", "", _levels(set(range(18)), 170)),  # windows 0-2 → alert
}


def write_dataset(root: Path, size: int = SIZE) -> Path:
    files, labels = [], []
    for rel, (cls, dist, levels) in CLIPS.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(root / rel), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (size, size))
        for v in levels:
            writer.write(np.full((size, size, 3), v, np.uint8))
        writer.release()
        files.append({"file": rel, "class": cls, "group": rel, "distance_bin": dist, "frames": FRAMES, "fps": 30.0})
        scale = size / SIZE
        labels += [{"file": rel, "frame": i + 1, "class": cls, "x": LABEL_PX[0] * scale, "y": LABEL_PX[1] * scale,
                    "w": LABEL_PX[2] * scale, "h": LABEL_PX[3] * scale} for i in range(FRAMES)]
    for name, rows in (("files.csv", files), ("labels.csv", labels)):
        with open(root / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return root


@dataclass
class StubResult:
    score: float
    boxes: list[Box]


class StubDetector:
    """The VisionDetector interface (prepare_rgb, infer, report_threshold), scripted by brightness."""

    report_threshold = 0.5

    def __init__(self):
        self.batches: list[int] = []

    def prepare_rgb(self, rgb: np.ndarray) -> float:
        return float(rgb.mean())

    def infer(self, frames: list[float]) -> list[StubResult]:
        self.batches.append(len(frames))
        return [self._one(m) for m in frames]

    @staticmethod
    def _one(mean: float) -> StubResult:
        if mean < 60:
            return StubResult(0.05, [])
        box, score = (ELSEWHERE, 0.65) if mean < 135 else (ON_TARGET, 0.70) if mean < 200 else (ON_TARGET, 0.90)
        return StubResult(0.95, [Box(x1=box[0], y1=box[1], x2=box[2], y2=box[3], score=score, label="drone"),
                                 Box(x1=0.0, y1=0.0, x2=0.1, y2=0.1, score=0.99, label="bird")])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("field") / "video")


@pytest.fixture(scope="module")
def toy_card(tmp_path_factory) -> Path:
    """Only its card is read when a stub detector is given (box threshold 0.3, report 0.5)."""
    from detectors.testing import toy_vision_model

    return toy_vision_model(tmp_path_factory.mktemp("m") / "toy.onnx")


def _run(dataset: Path, card: Path, every: int = 1, **kw):
    items = list_items(dataset, "video")
    stub = StubDetector()
    metrics, clips = evaluate_video(card, items, dataset, fps=5.0, every=every, detector=stub, progress=False, **kw)
    return metrics, clips, stub


@needs_redis
def test_video_metrics_by_hand(dataset, toy_card):
    m, clips, stub = _run(dataset, toy_card)
    assert m["clips"] == 6 and m["frames"] == 6 * FRAMES and m["frames_decoded"] == 6 * FRAMES
    assert m["frames_sampled"] == 6 * 10 and max(stub.batches) == 8
    # frame level: close = every frame hit; distant = boxes in the wrong place; medium = 15 of 60
    assert m["frame_recall_iou50_close"] == 1.0
    assert m["frame_recall_iou50_distant"] == 0.0
    assert m["frame_recall_iou50_medium"] == pytest.approx(15 / 60)
    assert m["frame_recall_iou50"] == pytest.approx(75 / 180)
    # frames with a drone box (the stub's bird boxes never count)
    assert m["frame_fp_rate_bird"] == pytest.approx(6 / 60)
    assert m["frame_fp_rate_airplane"] == 0.0
    assert m["frame_fp_rate_helicopter"] == pytest.approx(18 / 60)
    assert m["frame_fp_rate"] == pytest.approx(24 / 180)
    # AP: 75 true boxes (0.90) rank first, then false ones; recall stops at 75/180 = 0.417 with
    # precision 1 → 42 of the 101 recall points
    assert m["frame_ap50"] == pytest.approx(42 / 101)
    # clip level through the alerting rule: drone 1 and 2 alert, drone 3 (windows 0, 5, 6) does
    # not; the bird's one window does not, the helicopter's three in a row do
    alerted = {c.item.rel: c.alerted for c in clips}
    assert alerted == {"airplane/V_AIRPLANE_001.mp4": False, "bird/V_BIRD_001.mp4": False,
                       "drone/V_DRONE_001.mp4": True, "drone/V_DRONE_002.mp4": True, "drone/V_DRONE_003.mp4": False,
                       "helicopter/V_HELICOPTER_001.mp4": True}
    assert m["clip_recall"] == pytest.approx(2 / 3)
    assert (m["clip_recall_close"], m["clip_recall_medium"], m["clip_recall_distant"]) == (1.0, 0.0, 1.0)
    assert m["clip_false_alarm_rate"] == pytest.approx(1 / 3)
    assert (m["clip_false_alarm_bird"], m["clip_false_alarm_airplane"], m["clip_false_alarm_helicopter"]) == (0, 0, 1)
    assert m["clip_f1"] == pytest.approx(2 / 3)


@needs_redis
def test_every_scores_fewer_frames_but_keeps_clip_level(dataset, toy_card):
    m, clips, _ = _run(dataset, toy_card, every=4, keep_worst=True)
    assert m["frames"] == 6 * 15  # frames 0, 4, ..., 56
    assert m["frames_sampled"] == 6 * 10  # the camera's frames are scored regardless
    assert m["frame_fp_rate_bird"] == pytest.approx(2 / 15)  # frames 0 and 4 of 0-5
    assert m["frame_recall_iou50_medium"] == pytest.approx(4 / 15)  # 0, 4, 32, 36
    assert m["clip_recall"] == pytest.approx(2 / 3) and m["clip_false_alarm_rate"] == pytest.approx(1 / 3)
    worst = {c.item.rel: c.worst for c in clips}
    assert worst["airplane/V_AIRPLANE_001.mp4"] is None  # never a drone box
    assert worst["helicopter/V_HELICOPTER_001.mp4"].key == pytest.approx(0.70)
    assert worst["drone/V_DRONE_003.mp4"].frame.score == pytest.approx(0.05)


def _frame(score: float, boxes: list[tuple], truth: tuple | None) -> FrameScore:
    b = np.array([x[:4] for x in boxes], np.float32).reshape(-1, 4)
    return FrameScore(0, score, b, np.array([x[4] for x in boxes], np.float32),
                      None if truth is None else np.array(truth, np.float32), True, True)


def test_iou_and_thresholds_decide_a_frame_hit():
    """IoU ≥ 0.5 with the label, a box above the box threshold, a frame above the report threshold."""
    from trainer.data import Item
    from trainer.field_eval import ClipScore

    truth = (0.25, 0.25, 0.5, 0.5)
    near = (0.3125, 0.25, 0.5625, 0.5, 0.9)  # 4 px right at 64 px: IoU 0.6
    far = (0.34375, 0.25, 0.59375, 0.5, 0.9)  # 6 px right: IoU 0.45
    clip = ClipScore(Item(Path("d.mp4"), "drone/d.mp4", "drone", "g", meta={"distance_bin": "close"}), 30.0, 6)
    clip.frames = [_frame(0.9, [near], truth), _frame(0.9, [far], truth),
                   _frame(0.4, [near], truth),  # not reported: the operator never sees it
                   _frame(0.9, [near[:4] + (0.2,)], truth)]  # box below the detector's box threshold
    m = frame_metrics([clip], report_threshold=0.5, box_threshold=0.3)
    assert m["frame_recall_iou50_close"] == pytest.approx(1 / 4)
    assert m["frame_recall_iou50_medium"] is None and m["frame_fp_rate"] is None


def test_clip_metrics_counts():
    m = clip_metrics(["drone", "drone", "bird", "background"], [True, False, True, False], ["close", "distant", None, None],
                     ("bird",))
    assert m["clip_recall"] == 0.5 and m["clip_recall_close"] == 1.0 and m["clip_recall_distant"] == 0.0
    assert m["clip_recall_medium"] is None
    assert m["clip_false_alarm_rate"] == 0.5 and m["clip_false_alarm_bird"] == 1.0 and m["clip_false_alarm_background"] == 0.0
    assert m["clip_f1"] == pytest.approx(0.5)


@needs_redis
def test_confirmation_is_k_of_n_of_the_alerting(monkeypatch):
    """The alerting defaults (3 of 5 ≥ 0.6): three hits in five windows fire, spread ones do not,
    and scores below the report or confirm threshold never count."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    w = lambda seqs, score=0.9: [(s, s * 0.2, score) for s in seqs]  # noqa: E731
    got = confirm_clips([w([0, 1, 2]), w([0, 2, 4]), w([0, 3, 6, 9]), w([0, 1, 2], 0.55), w([0, 1, 2], 0.65), []],
                        modality="vision", report_threshold=0.5)
    assert got == [True, True, False, False, True, False]  # 0.55: reported, but below confirm's 0.6
    assert confirm_clips([w([0, 1, 2], 0.65)], modality="audio", report_threshold=0.7) == [False]


def test_missing_redis_server_says_make_setup(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError, match="make setup"):
        with alerting_redis():
            pass


def test_video_kind_in_list_items_and_splits(dataset):
    items = list_items(dataset, "video")
    assert [it.rel for it in items][:2] == ["airplane/V_AIRPLANE_001.mp4", "bird/V_BIRD_001.mp4"]
    assert items[2].meta["distance_bin"] == "close"
    test = list_items(dataset, "video", "test")
    assert {it.label for it in test} == {"drone", "bird", "airplane", "helicopter"}  # a split within each class


@needs_redis
def test_eval_cli_end_to_end_with_the_shipped_model(tmp_path):
    """The real models/vision.onnx on the tiny clips: the last line is JSON with the field keys,
    and the report folder holds the plots and the contact sheet."""
    model = Path(__file__).resolve().parents[3] / "models" / "vision.onnx"
    if not model.is_file():
        pytest.skip("models/vision.onnx not built (make models)")
    root = write_dataset(tmp_path / "video", size=160)
    report = tmp_path / "report"
    res = CliRunner().invoke(app, ["eval", "--model", str(model), "--data", str(root), "--every", "3", "--json",
                                   "--report", str(report)])
    assert res.exit_code == 0, res.output
    m = json.loads(res.output.strip().splitlines()[-1])
    for key in ("frame_ap50", "frame_recall_iou50_close", "frame_recall_iou50_medium", "frame_recall_iou50_distant",
                "frame_fp_rate_bird", "frame_fp_rate_airplane", "frame_fp_rate_helicopter", "clip_recall",
                "clip_recall_close", "clip_recall_medium", "clip_recall_distant", "clip_false_alarm_rate",
                "clip_false_alarm_bird", "clip_false_alarm_airplane", "clip_false_alarm_helicopter", "clip_f1"):
        assert key in m, key
    assert m["clips"] == 6 and m["frames"] == 6 * 20 and m["every"] == 3 and m["fps"] == 5.0
    for name in ("metrics.json", "contact_sheet.png", "recall_by_distance.png", "false_alarms_by_class.png"):
        assert (report / name).is_file(), name
    assert cv2.imread(str(report / "contact_sheet.png")) is not None


def _tone_clip(loud_seconds: set[int], seconds: int = 6, sr: int = 16_000) -> np.ndarray:
    """A 440 Hz tone, loud (0.5) in the given seconds and near silent (0.001) elsewhere."""
    t = np.arange(seconds * sr) / sr
    amp = np.array([0.5 if int(x) in loud_seconds else 0.001 for x in t])
    return np.round(amp * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


@needs_redis
def test_audio_clip_level_through_the_alerting_rule(tmp_path):
    """toy audio model: a loud second scores ≈1, a quiet one ≈0. The drone clip alerts; the
    helicopter's two loud seconds (0 and 3) do not; the background's three in a row do."""
    import soundfile as sf

    from detectors.testing import toy_audio_model

    root = tmp_path / "audio"
    for rel, loud in (("drone/a.wav", set(range(6))), ("helicopter/h.wav", {0, 3}), ("background/b.wav", {1, 2, 3})):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, _tone_clip(loud), 16_000, subtype="PCM_16")
    model = toy_audio_model(tmp_path / "m" / "toy.onnx")
    res = CliRunner().invoke(app, ["eval", "--model", str(model), "--data", str(root), "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.output.strip().splitlines()[-1])
    assert (m["n"], m["positives"], m["fp"]) == (18, 6, 5)  # window level stays as it was
    assert m["clips"] == 3 and m["clip_recall"] == 1.0
    assert m["clip_false_alarm_helicopter"] == 0.0 and m["clip_false_alarm_background"] == 1.0
    assert m["clip_false_alarm_rate"] == 0.5 and m["clip_f1"] == pytest.approx(2 / 3)


def test_short_audio_clips_get_no_clip_level(audio_folder, tmp_path):
    """1-2 s clips have fewer windows than the rule needs (k = 3): no clip keys, no Redis."""
    from detectors.testing import toy_audio_model

    model = toy_audio_model(tmp_path / "m" / "toy.onnx")
    res = CliRunner().invoke(app, ["eval", "--model", str(model), "--data", str(audio_folder), "--json"])
    m = json.loads(res.output.strip().splitlines()[-1])
    assert "clip_recall" not in m and m["n"] == 6


def test_report_without_matplotlib_still_evaluates(audio_folder, tmp_path, monkeypatch):
    """A serving install has no matplotlib: the metrics and metrics.json come out, the plots are
    skipped with a word about the `train` extra."""
    import sys

    from detectors.testing import toy_audio_model

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ModuleNotFoundError
    model = toy_audio_model(tmp_path / "m" / "toy.onnx")
    res = CliRunner().invoke(app, ["eval", "--model", str(model), "--data", str(audio_folder), "--json",
                                   "--report", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "plots skipped" in res.output and json.loads(res.output.strip().splitlines()[-1])["n"] == 6
    assert (tmp_path / "r" / "metrics.json").is_file() and not list((tmp_path / "r").glob("*.png"))
