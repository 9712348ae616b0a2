"""Toy models for the detector unit tests (built with onnx.helper by detectors.testing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.testing import toy_audio_model, toy_vision_model


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("toy-models")
    toy_vision_model(d / "vision.onnx")
    toy_vision_model(d / "vision-nobox.onnx", name="toy-vision-nobox", boxes=False)
    toy_audio_model(d / "audio.onnx")
    return d


@pytest.fixture(scope="session")
def vision_model(toy_dir: Path) -> Path:
    return toy_dir / "vision.onnx"


@pytest.fixture(scope="session")
def audio_model(toy_dir: Path) -> Path:
    return toy_dir / "audio.onnx"
