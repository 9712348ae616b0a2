"""Candidate tracks (detectors/tracking.py): a camera's frame score over its last frames."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import ModelSlot, VisionDetectorConfig, load_detector
from detectors.card import ModelCard, Temporal
from detectors.tracking import CandidateTracks, iou_matrix
from stream_processors.core import InputRecord
from stream_processors.testing import frame_record, jpeg
from stream_processors.vision import VisionPipeline, VisionProcessorConfig

A = np.array([[0.10, 0.10, 0.20, 0.20]], np.float32)
A_MOVED = A + 0.01  # the same object a few pixels on: IoU ~0.68
B = np.array([[0.60, 0.60, 0.70, 0.70]], np.float32)  # elsewhere: IoU 0


def test_iou_matrix():
    m = iou_matrix(np.r_[A, B], np.r_[A_MOVED, B])
    assert m.shape == (2, 2) and m[0, 1] == m[1, 0] == 0 and m[1, 1] == pytest.approx(1)
    assert 0.6 < m[0, 0] < 0.7


def test_a_candidate_is_averaged_with_the_ones_it_overlaps_in_the_last_frames():
    t = CandidateTracks(Temporal(frames=3))
    assert t.score("cam", 0.0, A, [0.9]) == pytest.approx(0.9)
    assert t.score("cam", 0.2, A_MOVED, [0.6]) == pytest.approx(0.75)
    assert t.score("cam", 0.4, A, [0.3]) == pytest.approx(0.6)
    assert t.score("cam", 0.6, A_MOVED, [0.3]) == pytest.approx(0.4)  # only the last 3 frames count


def test_the_frame_score_is_the_best_track_and_unlinked_candidates_start_afresh():
    t = CandidateTracks(Temporal(frames=3))
    t.score("cam", 0.0, A, [0.2])
    # B links to nothing: its mean is its own probability; A's track holds 0.2 and 0.4
    assert t.score("cam", 0.2, np.r_[A, B], [0.4, 0.5]) == pytest.approx(0.5)
    assert t.score("cam", 0.4, np.r_[A, B], [0.4, 0.2]) == pytest.approx(0.35)  # B: (0.5 + 0.2) / 2


def test_sources_gaps_late_frames_and_empty_frames():
    t = CandidateTracks(Temporal(frames=3, max_gap_s=1.0))
    t.score("cam-1", 0.0, A, [1.0])
    assert t.score("cam-2", 0.1, A, [0.0]) == 0.0  # another camera's tracks are its own
    assert t.score("cam-1", 5.0, A, [0.5]) == pytest.approx(0.5)  # after a gap: afresh
    assert t.score("cam-1", 4.0, A, [0.1]) == pytest.approx(0.1)  # a late frame is scored alone...
    assert t.score("cam-1", 5.2, A, [0.2]) == pytest.approx(0.35)  # ...and changes no track
    assert t.score("cam-1", 5.4, np.zeros((0, 4)), []) == 0.0  # nothing seen: the tracks end
    assert t.score("cam-1", 5.6, A, [0.8]) == pytest.approx(0.8)
    t.forget("cam-1")
    assert t.score("cam-1", 5.8, A, [0.2]) == pytest.approx(0.2)


def test_one_frame_is_the_best_candidate_probability():
    t = CandidateTracks(Temporal(frames=1))
    t.score("cam", 0.0, A, [0.9])
    assert t.score("cam", 0.2, np.r_[A, B], [0.1, 0.3]) == pytest.approx(0.3)


def smoothed_toy(tmp_path, frames: int):
    """The four-class toy graph (a bird box at 0.9, a drone box at 0.8 whatever the image; the
    frame score follows the brightness) with ``temporal.frames`` in its card."""
    from detectors.testing import toy_vision_model

    path = toy_vision_model(tmp_path / f"toy-{frames}.onnx", classes=True)
    card = ModelCard.load(path)
    card.model_copy(update={"temporal": Temporal(frames=frames)}).save(path)
    return path


@pytest.mark.parametrize("frames, expect", [(1, [(1, "bird", 0.9)]), (3, [(1, "drone", 0.8)])])
async def test_the_vision_processor_reports_on_the_cards_frame_score(tmp_path, frames, expect):
    """A dark frame: the graph's frame score is ~0 and a bird box shows; with smoothing, the
    frame is scored by its candidates' tracks (the drone box's 0.8), as the threshold was chosen."""
    config = VisionProcessorConfig(detector=VisionDetectorConfig(model=smoothed_toy(tmp_path, frames),
                                                                 box_threshold=0.5))
    p = VisionPipeline(config, ModelSlot(load_detector(config.detector)))
    key, value, headers, _ = frame_record("cam-1", 1, data=jpeg(brightness=0))
    result = await p.process([InputRecord("sensor.frames", 0, 0, key, value, headers)])
    assert [(d.input_seq, d.label, round(d.score, 3)) for d in result.detections] == expect


def test_a_card_that_asks_for_smoothing_needs_boxes(tmp_path):
    from detectors.base import ModelRefused
    from detectors.testing import toy_vision_model

    path = toy_vision_model(tmp_path / "nobox.onnx", boxes=False)
    ModelCard.load(path).model_copy(update={"temporal": Temporal(frames=3)}).save(path)
    with pytest.raises(ModelRefused, match="no boxes"):
        load_detector(VisionDetectorConfig(model=path))
