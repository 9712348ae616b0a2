"""What every detector shares: a verified model file + card, an :class:`OnnxSession`, warm-up.

A detector is one file with its pydantic config beside its class (DESIGN §9); the configs
form a discriminated union on ``type`` (see :mod:`detectors`). Loading a detector always
checks the model's bytes against its card's sha256 (and the announcement's, when there is
one), so a half-copied or tampered file is refused before it can serve.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, Field

from detectors.card import ModelCard, sha256_file
from detectors.session import OnnxSession, SessionSettings, batch_buckets
from skysentry.messages import ModelRef

log = logging.getLogger(__name__)


class ModelRefused(RuntimeError):
    """A model that must not serve (missing, wrong hash, wrong task, wrong graph); says why."""


class DetectorConfig(BaseModel):
    """Fields every detector config has; subclasses add ``type`` and their own knobs."""

    model: Path = Field(description="path of the .onnx file; its card is the .json beside it")
    session: SessionSettings = SessionSettings()
    report_threshold: float | None = Field(
        None, ge=0, le=1, description="override the card's thresholds.report (score ≥ this → Detection)")


# The shipped models: models/ of the project this package is installed from (`make setup`
# installs it editable), so a default model is found whatever the working directory.
SHIPPED_MODELS = Path(__file__).resolve().parent.parent / "models"


def missing_model_message(path: Path) -> str:
    return (f"model {path} does not exist (nor its card {ModelCard.card_path(path)}); "
            "run `make models` to build the shipped models (`make setup` rebuilds models/vision.onnx from its "
            "tracked delta), or pass --model PATH")


def verify_model(path: Path, *, expect_sha256: str | None = None, expect_task: str | None = None,
                 card: ModelCard | None = None) -> ModelCard:
    """Load the card beside ``path`` (unless given) and check hash and task; raise ModelRefused."""
    path = Path(path)
    if not path.is_file():
        raise ModelRefused(missing_model_message(path))
    try:
        card = card or ModelCard.load(path)
    except FileNotFoundError as exc:
        raise ModelRefused(str(exc)) from None
    except ValueError as exc:
        raise ModelRefused(f"model card {ModelCard.card_path(path)} is invalid: {exc}") from None
    actual = sha256_file(path)
    if actual != card.sha256:
        raise ModelRefused(f"{path}: sha256 {actual[:12]}… does not match its card's {card.sha256[:12]}…; "
                           "the file is incomplete or not the one the card describes")
    if expect_sha256 and actual != expect_sha256:
        raise ModelRefused(f"{path}: sha256 {actual[:12]}… does not match the announced {expect_sha256[:12]}…")
    if expect_task and card.task != expect_task:
        raise ModelRefused(f"{path}: card says task {card.task!r}, expected a {expect_task!r} model")
    return card


class Detector:
    """Base class: owns the card and session; subclasses define batches and results."""

    TASK: ClassVar[str]

    def __init__(self, path: Path, card: ModelCard, session: OnnxSession, report_threshold: float | None = None):
        self.path = Path(path)
        self.card = card
        self.session = session
        self.report_threshold = card.thresholds.report if report_threshold is None else report_threshold
        self.ref = ModelRef(name=card.name, version=card.version)
        self.input_name = self._pick_input(card.input.name)
        if "score" not in session.outputs:
            raise ModelRefused(f"{path}: graph has outputs {session.outputs}, needs 'score' [batch]")

    def _pick_input(self, wanted: str) -> str:
        names = list(self.session.inputs)
        if wanted in names:
            return wanted
        if len(names) == 1:
            return names[0]
        raise ModelRefused(f"{self.path}: card names input {wanted!r}, graph has {names}")

    @property
    def sha256(self) -> str:
        return self.card.sha256

    def example_batch(self, batch: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def warm_up(self, max_batch: int) -> dict[int, float]:
        """Run every batch size this detector will serve (see :func:`batch_buckets`)."""
        return self.session.warm_up(lambda b: {self.input_name: self.example_batch(b)}, batch_buckets(max_batch))

    def _scores(self, out: dict[str, np.ndarray], n: int) -> np.ndarray:
        scores = np.asarray(out["score"], dtype=np.float32).reshape(-1)[:n]
        if scores.shape[0] != n:
            raise ModelRefused(f"{self.path}: 'score' has {scores.shape[0]} values for a batch of {n}")
        return np.clip(np.nan_to_num(scores, nan=0.0), 0.0, 1.0)

    def describe(self) -> str:
        return f"{self.card.name}@{self.card.version} ({self.session.providers[0]}, sha256 {self.sha256[:12]}…)"


def open_session(path: Path, settings: SessionSettings) -> OnnxSession:
    try:
        return OnnxSession(path, settings)
    except Exception as exc:  # ORT raises its own types for unreadable graphs
        raise ModelRefused(f"{path}: onnxruntime cannot load it: {exc}") from None
