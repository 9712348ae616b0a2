"""Candidate tracks: a vision frame score that remembers the last few frames of its camera.

A drone at medium range is a blob of ~30 px; the region classifier's drone probability for it
flickers from frame to frame, and so does a bird's. Averaging each candidate's probability
with those of the candidates it overlaps in the camera's previous frames (a drone moves a few
pixels between two frames at 5 fps) steadies both: on the ddd_video validation clips it took
the confuser clips that alert from 1 of 17 to 0 at the same drone recall (models/README.md).

The frame's score is then the best candidate track's mean. Linking is greedy by IoU, so this is
not a multi-object tracker (no identities kept, no motion model); it is the smallest step
toward one (DESIGN §10). State is per source and in memory: a processor that takes over a
camera's partition starts its tracks afresh, as does a gap longer than ``max_gap_s`` or a new
model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.card import Temporal


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` [n, 4] with every box of ``b`` [m, 4] (x1, y1, x2, y2)."""
    a, b = np.asarray(a, np.float32).reshape(-1, 4), np.asarray(b, np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass(slots=True)
class _SourceTracks:
    time_s: float
    boxes: np.ndarray  # [k, 4] the previous frame's candidates
    history: list[list[float]]  # per candidate: its track's last drone probabilities, oldest first


class CandidateTracks:
    """Per-source candidate tracks; :meth:`score` is called once per frame, in capture order."""

    def __init__(self, temporal: Temporal):
        self.temporal = temporal
        self._sources: dict[str, _SourceTracks] = {}

    def score(self, source: str, time_s: float, boxes: np.ndarray, drone_probs: np.ndarray) -> float:
        """The frame's smoothed drone score: the best mean drone probability over the candidate
        tracks that reach this frame. ``boxes`` [k, 4] in the frame's normalised coordinates,
        ``drone_probs`` [k]. A frame older than the source's last one is scored alone and does
        not change the tracks (a late frame must not rewrite history)."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        probs = np.asarray(drone_probs, np.float32).reshape(-1)
        if len(probs) == 0:
            self._sources.pop(source, None)
            return 0.0
        prev = self._sources.get(source)
        if prev is not None and time_s < prev.time_s:
            return float(probs.max())
        fresh = prev is None or time_s - prev.time_s > self.temporal.max_gap_s or len(prev.boxes) == 0
        keep = self.temporal.frames - 1
        history: list[list[float]] = []
        ious = None if fresh else iou_matrix(boxes, prev.boxes)
        for i, p in enumerate(probs):
            past: list[float] = []
            if ious is not None and keep > 0:
                j = int(ious[i].argmax())
                if ious[i, j] >= self.temporal.link_iou:
                    past = prev.history[j][-keep:]
            history.append([*past, float(p)])
        self._sources[source] = _SourceTracks(time_s, boxes, history)
        return float(max(np.mean(h) for h in history))

    def forget(self, source: str | None = None) -> None:
        """Drop one source's tracks, or every source's."""
        if source is None:
            self._sources.clear()
        else:
            self._sources.pop(source, None)
