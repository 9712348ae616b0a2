"""`retrain`'s decision: a worse candidate is refused, a better one is published (toy models,
no torch: the decision is the same code whatever trained the candidate)."""

from __future__ import annotations

from detectors.card import ModelCard
from detectors.registry import ModelRegistry
from detectors.testing import toy_audio_model
from trainer.retrain import current_model, promote_if_better


def test_worse_candidate_is_refused(audio_folder, tmp_path):
    registry = tmp_path / "registry"
    good = toy_audio_model(tmp_path / "cur" / "audio.onnx", name="audio", version="1")
    always = toy_audio_model(tmp_path / "cand" / "audio.onnx", name="audio", version="2", bias=30.0)  # says drone always
    d = promote_if_better(always, good, [audio_folder], registry=str(registry), split=None, announce=False)
    assert not d.promoted
    assert d.candidate_score < d.current_score
    assert ModelRegistry(registry).versions("audio") == []


def test_better_candidate_is_promoted(audio_folder, tmp_path):
    registry = tmp_path / "registry"
    bad = toy_audio_model(tmp_path / "cur" / "audio.onnx", name="audio", version="1", bias=-100.0)  # never drone
    good = toy_audio_model(tmp_path / "cand" / "audio.onnx", name="audio", version="2")
    d = promote_if_better(good, bad, [audio_folder], registry=str(registry), split=None, announce=False)
    assert d.promoted and d.candidate_score > d.current_score and not d.announced, d
    assert ModelRegistry(registry).versions("audio") == ["2"]
    published = current_model("audio", str(registry), None)
    assert published is not None and ModelCard.load(published).version == "2"
    # the published model is now "current": the same candidate again is not better than itself
    again = promote_if_better(good, published, [audio_folder], registry=str(registry), split=None, announce=False)
    assert not again.promoted


def test_first_model_is_promoted(audio_folder, tmp_path):
    good = toy_audio_model(tmp_path / "cand" / "audio.onnx", name="audio", version="1")
    d = promote_if_better(good, None, [audio_folder], registry=str(tmp_path / "reg"), split=None, announce=False)
    assert d.promoted and d.current_score is None
