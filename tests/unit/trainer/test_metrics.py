"""Metrics against hand-computed values, and `eval` end to end on a hand-checkable folder."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from detectors.testing import toy_audio_model, toy_vision_model
from trainer.cli import app
from trainer.metrics import average_precision, classification_metrics, roc_auc, tpr_at_fpr


def test_classification_metrics_by_hand():
    y = np.array([1, 1, 1, 0, 0, 0, 0], bool)
    s = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.05])
    m = classification_metrics(y, s, 0.5)
    # tp=2 (0.9, 0.8), fn=1 (0.3), fp=1 (0.7), tn=3
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 3)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # pairs (pos, neg) ranked right: 0.9 > all 4, 0.8 > all 4, 0.3 > 3 of 4 → 11 / 12
    assert m["roc_auc"] == pytest.approx(11 / 12)
    # FPR 0 allows thresholds above 0.7 → TPR 2/3; FPR 0.25 (one negative) → still 2/3
    assert tpr_at_fpr(y, s, 0.01) == pytest.approx(2 / 3)
    assert tpr_at_fpr(y, s, 0.25) == pytest.approx(1.0)


def test_ties_and_missing_classes():
    assert roc_auc(np.array([1, 0], bool), np.array([0.5, 0.5])) == pytest.approx(0.5)
    m = classification_metrics(np.array([1, 1, 1], bool), np.array([0.9, 0.2, 0.6]))
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["precision"] is None and m["f1"] is None and m["roc_auc"] is None and m["tpr_at_fpr_0.01"] is None


def test_average_precision_by_hand():
    truths = [np.array([[0, 0, 0.5, 0.5]]), np.array([[0.5, 0.5, 1, 1]])]
    preds = [(np.array([[0, 0, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]]), np.array([0.9, 0.8])),
             (np.array([[0.1, 0.1, 0.2, 0.2]]), np.array([0.7]))]
    # ranked: TP (0.9), FP (0.8), FP (0.7); recall reaches 0.5 at precision 1 and never 1
    assert average_precision(preds, truths, 0.5) == pytest.approx(51 / 101)
    perfect = [(t, np.array([1.0])) for t in truths]
    assert average_precision(perfect, truths, 0.5) == pytest.approx(1.0)


def _last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_eval_audio_matches_hand_computed(audio_folder, tmp_path):
    """toy model: score = sigmoid(100·(rms − 0.05)); loud tone (rms 0.35) → ≈1, quiet → ≈0.
    Windows: drone a (1), b (2) → 3 positives, all detected; background c, d quiet, e loud →
    1 false positive. precision 3/4, recall 1, F1 6/7."""
    model = toy_audio_model(tmp_path / "m" / "toy.onnx")
    res = CliRunner().invoke(app, ["eval", "--model", str(model), "--data", str(audio_folder), "--json"])
    assert res.exit_code == 0, res.output
    m = _last_json(res.output)
    assert m["n"] == 6 and m["positives"] == 3 and m["negatives"] == 3
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(6 / 7)
    # the loud negative scores exactly like the positives (sigmoid saturates): no threshold
    # separates them, so at FPR ≤ 1 % nothing is detected
    assert m["tpr_at_fpr_0.01"] == pytest.approx(0.0)
    assert m["roc_auc"] is not None


def test_eval_without_negatives_gives_null_metrics(audio_folder, tmp_path):
    import shutil

    shutil.rmtree(audio_folder / "background")
    model = toy_audio_model(tmp_path / "m" / "toy.onnx")
    res = CliRunner().invoke(app, ["eval", "--model", str(model), "--data", str(audio_folder), "--json"])
    m = _last_json(res.output)
    assert m["recall"] == 1.0 and m["precision"] is None and m["roc_auc"] is None and m["tpr_at_fpr_0.01"] is None


def test_eval_vision_with_boxes(tmp_path):
    """toy vision model: fixed boxes (0.25..0.5 at 0.9, a near-duplicate at 0.8 that NMS
    removes, 0.6..0.9 at 0.1) on a 64x64 input; a white square image with a YOLO box equal to
    the first → AP = 1 at every IoU (the weak box ranks after the match, so it costs nothing)."""
    import cv2

    root = tmp_path / "img"
    (root / "drone").mkdir(parents=True)
    (root / "bird").mkdir(parents=True)
    cv2.imwrite(str(root / "drone" / "x.png"), np.full((64, 64, 3), 255, np.uint8))
    (root / "drone" / "x.txt").write_text("0 0.375 0.375 0.25 0.25\n")
    cv2.imwrite(str(root / "bird" / "y.png"), np.zeros((64, 64, 3), np.uint8))
    model = toy_vision_model(tmp_path / "m" / "toy.onnx")
    res = CliRunner().invoke(app, ["eval", "--model", str(model), "--data", str(root), "--json"])
    assert res.exit_code == 0, res.output
    m = _last_json(res.output)
    assert m["n"] == 2 and m["f1"] == pytest.approx(1.0) and m["roc_auc"] == pytest.approx(1.0)
    # the toy's boxes are the same on the bird image: its 0.9 box ties the true one and ranks
    # first (folder order), so precision is 1/2 at recall 1 → AP = 0.5
    assert m["ap50"] == pytest.approx(0.5)
    import shutil

    shutil.rmtree(root / "bird")
    m = _last_json(CliRunner().invoke(app, ["eval", "--model", str(model), "--data", str(root), "--json"]).output)
    assert m["ap50"] == pytest.approx(1.0) and m["ap50_95"] == pytest.approx(1.0)
    assert m["precision"] is None and m["roc_auc"] is None and m["recall"] == pytest.approx(1.0)


def test_eval_path_does_not_import_torch():
    code = ("import sys, trainer.cli, trainer.evaluate, trainer.retrain, trainer.publish; "
            "assert 'torch' not in sys.modules, 'eval imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True)
