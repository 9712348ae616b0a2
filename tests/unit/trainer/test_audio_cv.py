"""The audio recipe cross-validation keeps the test split out and pools its rotations right."""

from __future__ import annotations

import pytest

from trainer.audio_cv import FOLDS, cv_windows, summary

from .conftest import synthetic_audio_folder


def test_cv_uses_only_train_and_val_groups(tmp_path, monkeypatch):
    from trainer.data import DEFAULT_SEED, group_splits, list_items

    monkeypatch.setenv("SKYSENTRY_CACHE", str(tmp_path / "cache"))
    root = synthetic_audio_folder(tmp_path / "audio", clips=12)
    items = list_items(root, "audio")
    by_group = group_splits(items, DEFAULT_SEED)  # the trainer's split
    splits = [by_group[it.group] for it in items]
    assert "test" in splits  # the folder has test groups, so leaving them out is checked
    d = cv_windows(root, DEFAULT_SEED)
    assert len(d["x"]) == sum(s != "test" for s in splits)  # one window per 1 s file
    assert int(d["y"].sum()) == sum(it.positive and s != "test" for it, s in zip(items, splits))
    assert set(d["fold"].tolist()) <= set(range(FOLDS))


def test_summary_pools_counts_and_averages_the_rest():
    rows = [{"name": "a", "fold": 0, "tp": 8, "fp": 2, "fn": 0, "ap": 0.9, "roc_auc": 0.95, "droneprint_recall": 1.0},
            {"name": "a", "fold": 1, "tp": 2, "fp": 0, "fn": 8, "ap": 0.5, "roc_auc": 0.75, "droneprint_recall": 0.5}]
    s = summary(rows)["a"]
    assert s["rotations"] == [0, 1]
    assert s["pooled_f1"] == pytest.approx(2 * 10 / (2 * 10 + 2 + 8))  # not the mean of the two F1s
    assert s["mean_ap"] == pytest.approx(0.7) and s["mean_droneprint_recall"] == pytest.approx(0.75)
