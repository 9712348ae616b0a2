"""The shipped vision model is rebuilt from the ImageNet package weights + a tracked delta."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from detectors.card import ModelCard, sha256_file
from trainer.vision_delta import assemble, reference_input, save_delta
from trainer.vision_model import DroneDetector

pytestmark = pytest.mark.train
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def trained(tmp_path):
    """A 64 px detector whose head differs from the ImageNet initialisation, its delta, and a
    card whose sha256 is not the rebuilt file's (as when another torch exports other bytes)."""
    torch.manual_seed(0)
    model = DroneDetector(64, 64, pretrained=True).eval()
    with torch.no_grad():
        model.frame.bias += 0.5
        model.obj.weight.normal_()
    delta = save_delta(model.state_dict(), tmp_path / "vision.delta.npz", size=(64, 64))
    card = json.loads((REPO / "models" / "vision.json").read_text()) | {"sha256": "0" * 64}
    (tmp_path / "vision.json").write_text(json.dumps(card))
    return model, delta, tmp_path / "vision.onnx"


def test_the_delta_holds_only_what_training_changed(trained):
    _, delta, _ = trained
    keys = set(np.load(delta).files)
    assert {"frame.bias", "obj.weight"} <= keys
    assert not any(k.startswith("backbone.blocks.") for k in keys)  # the frozen ImageNet weights stay out


def test_rebuilt_model_matches_the_trained_one_and_the_card_follows_it(trained):
    import onnxruntime as ort

    model, delta, out = trained
    assemble(delta, out)
    assert ModelCard.load(out).sha256 == sha256_file(out)
    x = reference_input((64, 64))
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    with torch.no_grad():
        want = model(torch.from_numpy(x))
    for g, w in zip(got, want):
        assert np.abs(g - w.numpy()).max() < 1e-4


def test_a_delta_that_does_not_reproduce_its_reference_outputs_is_refused(trained):
    _, delta, out = trained
    z = dict(np.load(delta))
    z["frame.bias"] = z["frame.bias"] + 1.0
    np.savez(delta, **z)
    with pytest.raises(SystemExit, match="differs from the trained model"):
        assemble(delta, out)
    assert not out.exists() and ModelCard.load(out).sha256 == "0" * 64
