"""Registry layout, remote fetch through fsspec, and hot reload that never leaves a bad model serving."""

from __future__ import annotations

import asyncio

import pytest

from detectors import ModelRegistry, ModelSlot, Reloader, VisionDetectorConfig, load_detector
from detectors.card import sha256_file
from detectors.testing import toy_audio_model, toy_vision_model
from skysentry.messages import ModelAnnouncement


def test_publish_lays_out_versions_and_announces(tmp_path):
    reg = ModelRegistry(tmp_path / "registry")
    v1 = toy_vision_model(tmp_path / "src" / "a.onnx", name="sky-vision", version="1")
    v2 = toy_vision_model(tmp_path / "src" / "b.onnx", name="sky-vision", version="2", bias=3.0)
    ann1, ann2 = reg.publish(v1), reg.publish(v2)
    assert reg.versions("sky-vision") == ["1", "2"]
    assert ann2.uri.endswith("sky-vision/2/sky-vision.onnx") and ann2.sha256 == sha256_file(v2)
    assert ann1.task == "vision" and reg.path_of("sky-vision", "1").with_suffix(".json").is_file()
    assert reg.resolve(ann2.uri, ann2.sha256, ann2.card_uri) == reg.path_of("sky-vision", "2").resolve()


def test_remote_registry_is_fetched_into_a_content_addressed_cache(tmp_path):
    import fsspec

    src = toy_audio_model(tmp_path / "a.onnx", name="sky-audio", version="7")
    fs = fsspec.filesystem("memory")
    fs.pipe("/reg/sky-audio/7/sky-audio.onnx", src.read_bytes())
    fs.pipe("/reg/sky-audio/7/sky-audio.json", src.with_suffix(".json").read_bytes())
    reg = ModelRegistry("memory://reg", cache_dir=tmp_path / "cache")
    sha = sha256_file(src)
    path = reg.resolve("memory://reg/sky-audio/7/sky-audio.onnx", sha)
    assert path == tmp_path / "cache" / f"{sha}.onnx" and sha256_file(path) == sha
    assert path.with_suffix(".json").is_file()


async def test_reloader_swaps_only_verified_models(tmp_path):
    reg = ModelRegistry(tmp_path / "registry")
    base = VisionDetectorConfig(model=toy_vision_model(tmp_path / "v1.onnx", name="sky-vision", version="1"))
    slot = ModelSlot(load_detector(base))
    reloader = Reloader(slot, base, reg, max_batch=4)
    good = reg.publish(toy_vision_model(tmp_path / "v2.onnx", name="sky-vision", version="2", bias=30.0))

    tampered = good.model_copy(update={"version": "3", "sha256": "f" * 64})
    out = await reloader.apply(tampered)
    assert out.result == "refused" and "sha256" in out.reason and slot.current.ref.version == "1"

    out = await reloader.apply(good)
    assert out.result == "loaded" and slot.current.ref.version == "2" and slot.swaps == 1
    assert slot.current.session.warmed_batches == [1, 2, 4]

    assert (await reloader.apply(good)).result == "ignored"  # already serving
    audio = reg.publish(toy_audio_model(tmp_path / "a.onnx"))
    assert (await reloader.apply(audio)).result == "ignored"  # another task
    wrong_card = good.model_copy(update={"version": "9"})
    wrong_card = wrong_card.model_copy(update={"sha256": good.sha256})
    slot.swap(load_detector(base))
    out = await reloader.apply(wrong_card)
    assert out.result == "refused" and "card says sky-vision@2" in out.reason
    missing = ModelAnnouncement(name="sky-vision", version="5", task="vision", uri=str(tmp_path / "nope.onnx"),
                                sha256="a" * 64)
    assert (await reloader.apply(missing)).result == "refused"
    assert slot.current.ref.version == "1"


async def test_a_batch_in_flight_keeps_its_model(tmp_path):
    """The processor reads slot.current once per batch: a swap mid-batch does not affect it."""
    base = VisionDetectorConfig(model=toy_vision_model(tmp_path / "v1.onnx"))
    slot = ModelSlot(load_detector(base))
    in_batch = slot.current
    slot.swap(load_detector(VisionDetectorConfig(model=toy_vision_model(tmp_path / "v2.onnx", version="2"))))
    assert in_batch.ref.version == "1" and slot.current.ref.version == "2"
    await asyncio.sleep(0)
