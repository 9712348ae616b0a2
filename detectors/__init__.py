"""ONNX Runtime detectors: sessions, model cards, the registry and hot reload (DESIGN §5).

Public surface:

* :class:`~detectors.vision.VisionDetector` / :class:`~detectors.audio.AudioDetector` and
  their configs, a discriminated union on ``type`` (:data:`DetectorConfigUnion`);
* :class:`~detectors.session.OnnxSession` (providers, threads, I/O binding, warm-up);
* :class:`~detectors.registry.ModelRegistry`, :class:`~detectors.registry.ModelSlot`,
  :class:`~detectors.registry.Reloader` (verify → load → warm up → swap between batches).

Nothing in this package imports torch.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from detectors.audio import AudioDetector, AudioDetectorConfig
from detectors.base import Detector, ModelRefused
from detectors.card import ModelCard, sha256_file
from detectors.registry import ModelRegistry, ModelSlot, Reloader, load_detector
from detectors.session import OnnxSession, SessionSettings, batch_buckets
from detectors.vision import VisionDetector, VisionDetectorConfig

DetectorConfigUnion = Annotated[VisionDetectorConfig | AudioDetectorConfig, Field(discriminator="type")]

__all__ = [
    "AudioDetector", "AudioDetectorConfig", "Detector", "DetectorConfigUnion", "ModelCard", "ModelRefused",
    "ModelRegistry", "ModelSlot", "OnnxSession", "Reloader", "SessionSettings", "VisionDetector",
    "VisionDetectorConfig", "batch_buckets", "load_detector", "sha256_file",
]
