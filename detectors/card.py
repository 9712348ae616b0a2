"""Model cards: the JSON that travels beside every .onnx file (DESIGN §5).

A card says what a model is (name, version, task, labels), what it expects (input spec),
how to read its output (thresholds), how good it is (metrics), what it saw (training-data
digest and provenance) and which bytes it describes (sha256). Loading refuses a model
whose bytes do not match its card.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class InputSpec(BaseModel):
    """What the graph's input tensor holds.

    vision: ``uint8`` NHWC ``[batch, height, width, 3]`` in RGB; resize/letterbox outside,
    normalisation inside the graph. audio: ``int16`` or ``float32`` ``[batch, samples]`` of
    raw mono PCM at ``sample_rate``; the log-mel front-end is inside the graph.
    """

    name: str = "input"
    dtype: Literal["uint8", "int16", "float32"]
    shape: list[int | str]  # "batch" for the dynamic axis
    layout: Literal["NHWC", "NC"] = "NHWC"
    color: Literal["RGB", "BGR"] | None = "RGB"
    sample_rate: int | None = None
    resize: Literal["letterbox", "stretch"] | None = "letterbox"


class Thresholds(BaseModel):
    report: float = Field(0.5, ge=0, le=1)  # a window at or above this becomes a Detection
    box: float = Field(0.25, ge=0, le=1)  # boxes below this are dropped before NMS
    nms_iou: float = Field(0.45, ge=0, le=1)


class Temporal(BaseModel):
    """How a vision model's frame score is smoothed over a camera's consecutive frames
    (:mod:`detectors.tracking`): each candidate box's drone probability is averaged with those
    of the candidates it overlaps in the previous ``frames - 1`` frames. The report threshold
    was chosen with this smoothing, so it travels with the model."""

    model_config = ConfigDict(extra="forbid")

    frames: int = Field(1, ge=1, le=30, description="frames averaged per candidate track (1: no smoothing)")
    link_iou: float = Field(0.05, gt=0, le=1, description="IoU that links a candidate to one of the previous frame")
    max_gap_s: float = Field(2.0, gt=0, description="a longer gap between two frames of a source starts afresh")


class DataProvenance(BaseModel):
    name: str
    files: int | None = None
    licence: str
    note: str = ""


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str
    version: str
    task: Literal["vision", "audio"]
    labels: list[str] = ["drone"]
    input: InputSpec
    outputs: list[str] = ["score"]  # "score" [batch]; optionally "boxes" [batch, k, 4] + "box_scores" [batch, k]
    thresholds: Thresholds = Thresholds()
    temporal: Temporal | None = None  # vision: the frame score's smoothing over frames (None: none)
    metrics: dict[str, float | None] = {}
    training_data_digest: str | None = None
    data: list[DataProvenance] = []
    parity_max_abs_diff: float | None = None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    notes: str = ""

    @staticmethod
    def card_path(model_path: Path) -> Path:
        return Path(model_path).with_suffix(".json")

    def save(self, model_path: Path) -> Path:
        path = self.card_path(model_path)
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path

    @classmethod
    def load(cls, model_path: Path) -> "ModelCard":
        path = cls.card_path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"no model card {path} beside {model_path}; every model needs one")
        return cls.model_validate_json(path.read_text())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
