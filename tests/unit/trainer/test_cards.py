"""The shipped models: cards validate, match their bytes, honour the graph contracts and the
size limit, and say what data they saw and under which licence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from detectors.card import ModelCard, sha256_file

MODELS = Path(__file__).resolve().parents[3] / "models"


@pytest.mark.parametrize("name,task", [("audio", "audio"), ("vision", "vision")])
def test_shipped_model_card(name, task):
    path = MODELS / f"{name}.onnx"
    assert path.is_file(), f"{path} is missing: the default models are shipped in models/ (rebuild: make models)"
    card = ModelCard.load(path)
    assert card.task == task and card.sha256 == sha256_file(path)
    assert path.stat().st_size <= 20 * 1024 * 1024
    assert card.training_data_digest and card.training_data_digest.startswith("sha256:")
    assert card.parity_max_abs_diff is not None and card.parity_max_abs_diff < 1e-3
    assert card.data and any("redistribution" in (d.note + d.licence) for d in card.data)
    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    inp = model.graph.input[0]
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == card.input.name and isinstance(dims[0], str)  # dynamic batch
    if task == "audio":
        assert card.input.dtype == "int16" and card.input.shape == ["batch", 16000] and card.outputs == ["score"]
    else:
        assert card.input.dtype == "uint8" and card.input.layout == "NHWC" and card.input.resize == "letterbox"
        assert card.outputs == ["score", "boxes", "box_scores"]
    assert [o.name for o in model.graph.output] == card.outputs


def test_serving_detectors_load_shipped_models():
    from detectors.audio import AudioDetector, AudioDetectorConfig
    from detectors.vision import VisionDetector, VisionDetectorConfig

    audio = AudioDetector.load(AudioDetectorConfig(model=MODELS / "audio.onnx"))
    scores = audio.infer([audio.fit(np.zeros(16000, np.int16), 16000)])
    assert scores.shape == (1,) and 0 <= scores[0] <= 1
    vision = VisionDetector.load(VisionDetectorConfig(model=MODELS / "vision.onnx"))
    res = vision.infer([vision.prepare_rgb(np.full((270, 480, 3), 200, np.uint8))])
    assert 0 <= res[0].score <= 1
