"""The vision model's second stage: box refinement targets, candidate matching, that its training
learns to move boxes, and how the report threshold is picked (train extra: torch)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.train


def test_box_deltas_and_apply_deltas_are_inverse():
    import torch

    from trainer.vision_model import apply_deltas, box_deltas

    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0], [100.0, 100.0, 104.0, 103.0]])
    truths = torch.tensor([[12.0, 18.0, 40.0, 50.0], [90.0, 95.0, 130.0, 120.0]])
    assert torch.allclose(apply_deltas(boxes, box_deltas(boxes, truths)), truths, atol=1e-4)
    assert torch.equal(apply_deltas(boxes, torch.zeros(2, 4)), boxes)


def test_a_rotor_inside_a_large_drone_is_on_the_target_and_a_cloud_is_background():
    from trainer.crop_stage import match_candidates

    truth = np.array([[100, 100, 400, 300]], np.float32)
    props = np.array([[110, 110, 160, 150],  # a rotor: IoU 0.03, all inside
                      [120, 110, 390, 290],  # the drone again
                      [500, 20, 560, 60],  # a cloud, far away
                      [340, 240, 420, 320]], np.float32)  # across its corner: neither
    on, far, best = match_candidates(props, truth)
    assert on.tolist() == [True, True, False, False]
    assert far.tolist() == [False, False, True, False]
    assert best.tolist() == [0, 0, 0, 0]
    on, far, _ = match_candidates(props, np.zeros((0, 4), np.float32))
    assert not on.any() and far.all()


def _mapped_regions(n: int = 256):
    """A fresh classifier (no ImageNet weights) and cached maps of ``n`` regions in which the class
    is visible and every target sits 40 % of a box to the lower right of its region."""
    import torch

    from trainer.vision_model import CROP, CropClassifier

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (n, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(10, 40, (n, 2)).astype(np.float32)], axis=1)
    w = boxes[:, 2:] - boxes[:, :2]
    truths = boxes + np.concatenate([w, w], axis=1) * 0.4
    truths[::4] = np.nan  # background regions have no box to learn
    labels = np.where(np.isnan(truths[:, 0]), 0, 1 + rng.integers(0, 4, n))
    data = {"labels": labels, "boxes": boxes, "truths": truths.astype(np.float32)}
    torch.manual_seed(0)  # the MLP's initial weights (the test must not depend on what ran before it)
    classifier = CropClassifier(pretrained=False, local=None).eval()  # fine_tune trains the MLP and box head
    shape = classifier.lower(torch.zeros(1, 3, CROP, CROP)).shape[1:]  # what the frozen part hands on
    maps = rng.normal(size=(n, *shape)).astype(np.float32)
    maps[np.arange(n), labels] += 3.0  # so later epochs classify better
    return classifier, maps.astype(np.float16), data


def test_fine_tuning_learns_to_move_boxes_onto_their_targets():
    from trainer.crop_stage import fine_tune

    classifier, maps, data = _mapped_regions()
    m = fine_tune(classifier, maps, data, maps, data, epochs=10, lr=1e-3, batch=16)
    assert m["crop_val_box_iou_before"] < 0.3
    assert m["crop_val_box_iou"] > m["crop_val_box_iou_before"] + 0.3


def test_fine_tuning_keeps_the_best_epoch_on_val_and_a_refit_the_last(monkeypatch):
    import itertools

    import trainer.crop_stage as cs

    classifier, maps, data = _mapped_regions(64)
    for keep_last, kept in ((False, 1), (True, 3)):
        epoch = itertools.count(1)
        monkeypatch.setattr(cs, "drone_tpr", lambda *a: 1.0 / next(epoch))  # val gets worse every epoch
        m = cs.fine_tune(classifier, maps, data, maps, data, epochs=3, batch=16, keep_last=keep_last)
        assert m["crop_best_epoch"] == kept


def test_the_report_threshold_is_the_middle_of_the_best_plateau_within_the_false_alarm_budget():
    from trainer.train_vision import pick_threshold

    rows = [(0.5, 1.0, 0.4), (0.6, 1.0, 0.18), (0.65, 1.0, 0.06), (0.7, 1.0, 0.06), (0.75, 1.0, 0.06),
            (0.8, 1.0, 0.06), (0.85, 1.0, 0.06), (0.9, 0.83, 0.06), (0.99, 0.5, 0.0)]
    assert pick_threshold(rows)[0] == 0.75
    assert pick_threshold(rows, max_false_alarms=0.0)[0] == 0.99
    assert pick_threshold([(0.5, 1.0, 0.5), (0.9, 0.8, 0.2)])[0] == 0.9  # nothing within budget: fewest alarms
