"""The vision detector: uint8 frames in, a per-frame drone score (and boxes) out.

Graph contract (the trainer exports exactly this):

* input ``image``: ``uint8 [batch, H, W, 3]``, RGB, at the card's fixed size
  (``card.input.shape == ["batch", H, W, 3]``). The frame is letterboxed *outside* the graph
  with :func:`detectors.imaging.letterbox` (aspect kept, mid-grey border); normalisation
  (scaling, mean/std) happens *inside* the graph.
* output ``score``: ``float32 [batch]``, the frame-level drone probability, sigmoid applied.
* optional box head: ``boxes`` ``float32 [batch, K, 4]``, normalised (x1, y1, x2, y2) in the
  letterboxed input, and ``box_scores``: ``float32 [batch, K]`` (one class, the card's first
  label) or ``[batch, K, C]`` (a probability per class, in the order of the card's ``labels``,
  e.g. drone, bird, airplane, helicopter). Each box takes its strongest class; the detector maps
  boxes back to the original frame's normalised coordinates, drops those below
  ``thresholds.box`` and runs one class-agnostic NMS at ``thresholds.nms_iou`` (numpy,
  :func:`detectors.imaging.nms`), so one object ends as one box with one label.

``VisionResult.score`` is the frame's drone score (the graph's ``score``); ``VisionResult.other``
names the strongest other class seen, so a processor can report a bird it saw without it ever
counting as a drone. When the card asks for ``temporal`` smoothing, a camera's frames are
scored through :meth:`VisionDetector.frame_score` instead, which averages each candidate's drone
probability over the frames before (:mod:`detectors.tracking`); the report threshold was chosen
that way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from detectors.base import SHIPPED_MODELS, Detector, DetectorConfig, ModelRefused, open_session, verify_model
from detectors.card import ModelCard
from detectors.imaging import ImageDecodeError, Letterbox, decode_jpeg, jpeg_reduction, letterbox, nms, unletterbox_boxes
from detectors.session import pad_batch
from detectors.tracking import CandidateTracks
from skysentry.messages import Box


class VisionDetectorConfig(DetectorConfig):
    type: Literal["vision"] = "vision"
    model: Path = SHIPPED_MODELS / "vision.onnx"
    box_threshold: float | None = Field(None, ge=0, le=1, description="override the card's thresholds.box")
    nms_iou: float | None = Field(None, ge=0, le=1, description="override the card's thresholds.nms_iou")
    max_boxes: int = Field(20, ge=0, description="at most this many boxes per frame after NMS")


@dataclass(slots=True)
class VisionResult:
    score: float  # the frame's drone score
    boxes: list[Box] = field(default_factory=list)
    # every candidate of the box head before any threshold (the frame's normalised coordinates)
    # and its drone probability: what candidate tracks average over frames (filled only when
    # the card asks for them)
    candidates: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    drone_probs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def other(self, positive: str = "drone") -> tuple[str, float] | None:
        """(label, score) of the strongest box of another class than ``positive``, if any."""
        best = max((b for b in self.boxes if b.label != positive), key=lambda b: b.score, default=None)
        return None if best is None else (best.label, best.score)


@dataclass(slots=True)
class PreparedFrame:
    """A frame ready for the graph, and how to map its boxes back."""

    tensor: np.ndarray  # uint8 [H, W, 3]
    letterbox: Letterbox


class VisionDetector(Detector):
    TASK = "vision"

    def __init__(self, path: Path, card: ModelCard, session, config: VisionDetectorConfig | None = None):
        config = config or VisionDetectorConfig(model=path)
        super().__init__(path, card, session, config.report_threshold)
        self.config = config
        self.input_height, self.input_width = self._input_size()
        self.box_threshold = card.thresholds.box if config.box_threshold is None else config.box_threshold
        self.nms_iou = card.thresholds.nms_iou if config.nms_iou is None else config.nms_iou
        outs = set(session.outputs)
        self.has_boxes = {"boxes", "box_scores"} <= outs
        self.labels = list(card.labels) or ["drone"]
        if card.input.dtype != "uint8":
            raise ModelRefused(f"{path}: vision input must be uint8 NHWC, card says {card.input.dtype}")
        smooth = card.temporal is not None and card.temporal.frames > 1
        if smooth and not self.has_boxes:
            raise ModelRefused(f"{path}: the card asks for temporal smoothing, but the graph has no boxes to track")
        self.tracks = CandidateTracks(card.temporal) if smooth else None

    @classmethod
    def load(cls, config: VisionDetectorConfig, *, expect_sha256: str | None = None) -> "VisionDetector":
        card = verify_model(config.model, expect_sha256=expect_sha256, expect_task=cls.TASK)
        return cls(config.model, card, open_session(config.model, config.session), config)

    def _input_size(self) -> tuple[int, int]:
        shape = list(self.card.input.shape)
        if len(shape) != 4 or shape[3] != 3:
            raise ModelRefused(f"{self.path}: vision input shape must be [batch, H, W, 3], card says {shape}")
        h, w = shape[1], shape[2]
        graph = self.session.input_shape(self.input_name)
        if not (isinstance(h, int) and isinstance(w, int)):
            h, w = graph[1], graph[2]
        if not (isinstance(h, int) and isinstance(w, int)):
            raise ModelRefused(f"{self.path}: the input height/width must be fixed, card says {shape}")
        if isinstance(graph[1], int) and (graph[1], graph[2]) != (h, w):
            raise ModelRefused(f"{self.path}: card says input {h}x{w}, graph says {graph[1]}x{graph[2]}")
        return h, w

    # -- pre-processing (thread pool) --------------------------------------------------------

    def prepare_jpeg(self, jpeg: bytes | memoryview, width: int | None = None, height: int | None = None
                     ) -> PreparedFrame:
        """JPEG → letterboxed tensor. ``width``/``height`` (the ``ce_width``/``ce_height``
        headers) let libjpeg decode at a reduced size; a JPEG whose size disagrees with them
        raises ImageDecodeError."""
        reduction = jpeg_reduction(width, height, self.input_width, self.input_height) if width and height else 1
        rgb = decode_jpeg(jpeg, reduction)
        if width and height:
            expect = (-(-height // reduction), -(-width // reduction))
            if rgb.shape[:2] != expect:
                got_h, got_w = rgb.shape[0] * reduction, rgb.shape[1] * reduction
                raise ImageDecodeError(f"headers say {width}x{height}, the JPEG is about {got_w}x{got_h}")
        return self.prepare_rgb(rgb, original=(width, height) if width and height else None)

    def prepare_rgb(self, rgb: np.ndarray, original: tuple[int, int] | None = None) -> PreparedFrame:
        tensor, lb = letterbox(rgb, self.input_width, self.input_height, original=original)
        return PreparedFrame(tensor, lb)

    def example_batch(self, batch: int) -> np.ndarray:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (batch, self.input_height, self.input_width, 3), dtype=np.uint8)

    # -- inference (executor thread) ----------------------------------------------------------

    def infer(self, frames: list[PreparedFrame]) -> list[VisionResult]:
        if not frames:
            return []
        n = len(frames)
        batch = np.stack([f.tensor for f in frames])
        batch = pad_batch(batch, self.session.padded_size(n))
        out = self.session.run({self.input_name: batch})
        scores = self._scores(out, n)
        results = [VisionResult(float(s)) for s in scores]
        if self.has_boxes:
            boxes = np.asarray(out["boxes"], dtype=np.float32)
            box_scores = np.asarray(out["box_scores"], dtype=np.float32)
            for i, frame in enumerate(frames):
                results[i].boxes = self._postprocess(boxes[i], box_scores[i], frame.letterbox)
                if self.tracks is not None:  # what the tracks average; nothing else reads them
                    results[i].candidates = unletterbox_boxes(boxes[i].reshape(-1, 4), frame.letterbox)
                    results[i].drone_probs = np.nan_to_num(box_scores[i].reshape(len(results[i].candidates), -1)[:, 0])
        return results

    def frame_score(self, source: str, time_s: float, result: VisionResult) -> float:
        """The score that decides whether a camera's frame is reported: the graph's frame score,
        or, when the card asks for it, the best candidate track's mean over the camera's last
        frames (call once per frame, in capture order; ``time_s`` is its capture time)."""
        if self.tracks is None:
            return result.score
        return self.tracks.score(source, time_s, result.candidates, result.drone_probs)

    def _postprocess(self, boxes: np.ndarray, scores: np.ndarray, lb: Letterbox) -> list[Box]:
        boxes = boxes.reshape(-1, 4)
        scores = np.nan_to_num(scores.reshape(len(boxes), -1), nan=0.0)
        classes = scores.argmax(axis=1)
        scores = scores.max(axis=1)
        keep = scores >= self.box_threshold
        if not keep.any():
            return []
        mapped = unletterbox_boxes(boxes[keep], lb)
        kept_scores = np.clip(scores[keep], 0.0, 1.0)
        kept_classes = classes[keep]
        idx = nms(mapped, kept_scores, self.nms_iou, self.config.max_boxes)
        return [Box(x1=float(b[0]), y1=float(b[1]), x2=float(b[2]), y2=float(b[3]), score=float(s),
                    label=self.labels[min(int(c), len(self.labels) - 1)])
                for b, s, c in zip(mapped[idx], kept_scores[idx], kept_classes[idx])]
