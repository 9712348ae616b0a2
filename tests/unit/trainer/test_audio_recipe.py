"""Pieces of the audio recipe that need no training: synthetic tonal negatives, the
augmenter, average precision, and the validation-only report threshold."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.audio_recipe import Augmenter, Recipe, report_threshold, val_scores
from trainer.metrics import average_precision_score
from trainer.tonal import KINDS, tonal_negatives


def test_tonal_negatives_are_deterministic_int16_windows_of_every_kind():
    a = tonal_negatives(2 * len(KINDS), seed=5)
    assert a.shape == (2 * len(KINDS), 16_000) and a.dtype == np.int16
    assert np.array_equal(a, tonal_negatives(2 * len(KINDS), seed=5))
    assert not np.array_equal(a, tonal_negatives(2 * len(KINDS), seed=6))
    peak = np.abs(a.astype(np.int32)).max(axis=1)
    assert np.all(peak > 32767 * 10 ** (-20.5 / 20)) and np.all(peak < 32767)  # -20 … -1 dBFS
    assert np.all(a.astype(np.float64).std(axis=1) > 0)
    assert tonal_negatives(0).shape == (0, 16_000)


def test_augmenter_keeps_shape_and_dtype():
    rng = np.random.default_rng(0)
    x = rng.integers(-2000, 2000, (6, 16_000)).astype(np.int16)
    y = np.array([1, 0, 1, 0, 1, 0], bool)
    out = Augmenter(x[~y], seed=1, neg_mix=1.0, pos_mix=0.0, speed=(0.9, 1.1))(x, y)
    assert out.shape == x.shape and out.dtype == np.int16
    assert not np.array_equal(out, x)


def test_average_precision_by_hand():
    # ranked: pos (P=1), neg, pos (P=2/3), neg, neg → AP = (1 + 2/3) / 2
    y = np.array([1, 0, 1, 0, 0], bool)
    s = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    assert average_precision_score(y, s) == pytest.approx(5 / 6)
    assert average_precision_score(np.array([1, 1], bool), np.array([0.2, 0.3])) is None


def test_report_threshold_on_real_windows_is_capped_by_synthetic_recall():
    # real windows: positives at 0.9, negatives at 0.7 → any threshold in (0.7, 0.9] is perfect;
    # synthetic drones score 0.6, so keeping their recall ≥ 0.9 caps the threshold at 0.6
    y = np.array([1, 1, 0, 0, 1, 1, 1], bool)
    p = np.array([0.9, 0.9, 0.7, 0.7, 0.6, 0.6, 0.6])
    real = np.array([1, 1, 1, 1, 0, 0, 0], bool)
    at, cap, on = report_threshold(y, p, real, Recipe(select_on="real_ap"))
    assert on == "real" and cap == pytest.approx(0.6) and at <= 0.6
    at, cap, _ = report_threshold(y, p, real, Recipe(select_on="real_ap", min_syn_recall=0.0))
    assert cap == pytest.approx(0.8) and 0.7 < at <= 0.8
    scores = val_scores(y, p, real, "real_ap")
    assert scores["real_ap"] == pytest.approx(1.0) and scores["synthetic_recall"] == pytest.approx(1.0)
