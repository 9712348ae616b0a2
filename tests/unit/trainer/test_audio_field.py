"""Field clips in audio training (ddd_audio style): long clips are cut into overlapping 1 s
training windows, the small set is split within each class, and no window of a test group
is ever trained or validated on; the confirmation rule gives the clip-level numbers."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from trainer.data import group_splits, list_items
from trainer.field_eval import confirmed
from trainer.train_audio import clip_metrics, folder_windows

CLASSES = ("drone", "helicopter", "background")
SR = 16_000


def field_folder(root: Path, groups: int = 6, per_group: int = 2, seconds: float = 3.0) -> Path:
    """``CLASS/CLASS_NNN.wav`` clips of ``seconds`` (distinct noise each, so every window is
    unique) and a files.csv whose ``group`` joins ``per_group`` consecutive clips, as in ddd_audio."""
    rows = []
    k = 0
    for cls in CLASSES:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for g in range(groups):
            for j in range(per_group):
                k += 1
                rng = np.random.default_rng(k)
                pcm = (rng.standard_normal(int(seconds * SR)) * 2000).astype(np.int16)
                if cls == "drone":
                    pcm = pcm + (4000 * np.sin(2 * np.pi * 180 * np.arange(pcm.size) / SR)).astype(np.int16)
                name = f"{cls}/{cls.upper()}_{k:03d}.wav"
                sf.write(root / name, pcm, SR, subtype="PCM_16")
                rows.append({"file": name, "class": cls, "group": f"{cls}-{g:02d}", "seconds": seconds})
    with open(root / "files.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_long_clips_are_windowed_and_test_groups_never_trained_on(tmp_path, monkeypatch):
    monkeypatch.setenv("SKYSENTRY_CACHE", str(tmp_path / "cache"))
    root = field_folder(tmp_path / "ddd_audio")
    items = list_items(root, "audio")
    splits = group_splits(items)
    # few groups per class: split within each class, so every class has test and val groups
    for cls in CLASSES:
        assert {splits[it.group] for it in items if it.label == cls} == {"train", "val", "test"}

    fw = folder_windows(root, train_hop=SR // 2, repeat=2, field_classes=["background"])
    train_items = [it for it in items if splits[it.group] == "train"]
    # a 3 s clip gives 5 training windows at a 0.5 s hop, and the set is seen twice
    assert len(fw.y_train) == 2 * 5 * len(train_items)
    assert {items[i].group for i in fw.train_owner} == {it.group for it in train_items}
    assert fw.y_train.sum() == 2 * 5 * sum(it.positive for it in train_items)
    # validation: consecutive 1 s windows (3 per clip), val groups only
    assert len(fw.y_val) == 3 * sum(splits[it.group] == "val" for it in items)
    assert {splits[items[i].group] for i in fw.val_owner} == {"val"}
    assert len(fw.ambient) == 5 * sum(it.label == "background" for it in train_items)

    # by content: no window of a test clip (at any offset of the 0.5 s grid) is in training or validation
    from trainer.audio_io import read_audio, windows

    seen = {w.tobytes() for w in fw.x_train} | {w.tobytes() for w in fw.x_val}
    test_items = [it for it in items if splits[it.group] == "test"]
    assert len(test_items) == len(CLASSES) * 2
    for it in test_items:
        assert not any(w.tobytes() in seen for w in windows(read_audio(it.path), SR, SR // 2))
    for it in train_items[:3]:  # and the check can fail: training clips are found
        assert all(w.tobytes() in seen for w in windows(read_audio(it.path), SR, SR // 2))


def test_confirmation_rule_on_consecutive_windows():
    assert confirmed([1, 1, 0, 1, 0])
    assert confirmed([0, 0, 0, 0, 1, 0, 1, 1])
    assert not confirmed([1, 0, 0, 1, 0, 1, 0, 0, 1])  # never 3 hits within 5 consecutive windows
    assert not confirmed([1, 1])
    # clips of 4 windows: a drone with 3 hits (alert), a helicopter with 3 at 0.7, a background
    # with 2 (none), a drone with none
    scores = np.array([0.9, 0.9, 0.1, 0.9, 0.7, 0.1, 0.7, 0.7, 0.9, 0.1, 0.1, 0.9, 0.2, 0.3, 0.1, 0.0])
    owner = np.repeat(np.arange(4), 4)
    labels = ["drone", "helicopter", "background", "drone"]
    m = clip_metrics(labels, scores, owner, 0.6)
    assert m["clip_recall"] == pytest.approx(0.5) and m["clip_precision"] == pytest.approx(0.5)
    assert m["clip_false_alarm_helicopter"] == 1.0 and m["clip_false_alarm_background"] == 0.0
    assert m["clip_f1"] == pytest.approx(0.5) and m["clips_alerted"] == 2
    # a higher threshold (the card's report threshold above 0.6) drops the 0.7 hits
    m = clip_metrics(labels, scores, owner, 0.8)
    assert m["clip_false_alarm_helicopter"] == 0.0 and m["clip_precision"] == pytest.approx(1.0)


@pytest.mark.train
@pytest.mark.skipif(shutil.which("redis-server") is None and not os.environ.get("REDIS_URL"),
                    reason="test-split clip level runs the alerting's confirmation rule in Redis")
def test_tiny_run_with_a_field_set_reports_clip_metrics_and_its_licence(tmp_path, monkeypatch):
    from trainer.train_audio import train_audio

    monkeypatch.setenv("SKYSENTRY_CACHE", str(tmp_path / "cache"))
    root = field_folder(tmp_path / "ddd_audio", seconds=5.0)
    out = train_audio([root], tmp_path / "out", epochs=1, synthetic_clips=0, batch=16, width=4,
                      run_dir=tmp_path / "run", repeat={"ddd_audio": 2}, field_pool=("ddd_audio/background",),
                      field_mix=0.5)
    m = out.card.metrics
    for key in ("ddd_audio.test.f1", "ddd_audio.test.clip_f1", "ddd_audio.test.clip_recall",
                "ddd_audio.test.clip_false_alarm_helicopter", "ddd_audio.test.clip_false_alarm_background",
                "ddd_audio.val.clip_f1", "ddd_audio.val.clip_false_alarm_helicopter"):
        assert key in m
    assert m["ddd_audio.test.clips"] == 2 * len(CLASSES)
    assert "may not be used commercially" not in out.card.notes  # ddd_audio alone is CC0
    (entry,) = [d for d in out.card.data if d.name == "ddd_audio"]
    assert entry.licence.startswith("CC0 1.0")
