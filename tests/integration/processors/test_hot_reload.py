"""Hot reload through the ``models`` topic: a verified model serves without a restart; one whose
sha256 does not match is refused and the old one keeps serving; garbage goes to models.dlq."""

from __future__ import annotations

import pytest

from detectors import ModelRegistry
from detectors.testing import toy_vision_model
from stream_processors.testing import (OutputCollector, announce, create_topics, dlq_reason, frame_record,
                                       isolated_settings, jpeg, publish)

pytestmark = pytest.mark.integration


async def test_announced_model_is_served_without_restart_and_bad_hash_is_refused(stack, toy_models, tmp_path,
                                                                                 run_processor):
    registry = ModelRegistry(tmp_path / "registry")
    v1 = toy_vision_model(tmp_path / "src" / "v1.onnx", name="sky-vision", version="1")
    # v2 scores everything ≈1 — even a grey frame the v1 model scores ≈0.2
    v2 = toy_vision_model(tmp_path / "src" / "v2.onnx", name="sky-vision", version="2", bias=30.0)
    s = isolated_settings(stack.bootstrap_servers, vision_model=v1,
                          vision_processor={"registry_root": str(registry.root), "max_batch": 2})
    await create_topics(s)
    grey = lambda seq: frame_record("cam-1", seq, data=jpeg(brightness=90))  # noqa: E731
    white = lambda seq: frame_record("cam-1", seq)  # noqa: E731

    async with OutputCollector(s.kafka, s.topics, dlq_of=s.topics.models) as out:
        async with run_processor(s, "vision") as svc:
            first = [grey(0), white(1)]
            await publish(s.kafka, s.topics.frames, [r[:3] for r in first])
            await out.wait_for(lambda o: first[1][3].id in o.input_ids(), 20, "v1 detection")
            assert first[0][3].id not in out.out.input_ids()  # v1 does not report the grey frame

            ann2 = registry.publish(v2)
            await announce(s.kafka, s.topics.models, ann2)
            await _until(lambda: svc.slot.current.ref.version == "2", "v2 to be served")
            second = [grey(2)]
            await publish(s.kafka, s.topics.frames, [r[:3] for r in second])
            await out.wait_for(lambda o: second[0][3].id in o.input_ids(), 20, "v2 detection")

            # v3: the announcement's hash is not the file's — refused, v2 keeps serving
            v3 = toy_vision_model(tmp_path / "src" / "v3.onnx", name="sky-vision", version="3", bias=-30.0)
            ann3 = registry.publish(v3).model_copy(update={"sha256": "0" * 64})
            await announce(s.kafka, s.topics.models, ann3)
            # garbage on the models topic: dead-lettered, the watcher keeps going
            await publish(s.kafka, s.topics.models, [(b"sky-vision", b"{not json", [])])
            await out.wait_for(lambda o: o.dead, 20, "models DLQ record")
            third = [grey(3)]
            await publish(s.kafka, s.topics.frames, [r[:3] for r in third])
            await out.wait_for(lambda o: third[0][3].id in o.input_ids(), 20, "detection after refusal")

            # and a later good announcement is still applied
            v4 = toy_vision_model(tmp_path / "src" / "v4.onnx", name="sky-vision", version="4", bias=1.0)
            await announce(s.kafka, s.topics.models, registry.publish(v4))
            await _until(lambda: svc.slot.current.ref.version == "4", "v4 to be served")
            # each model's scores come in its own once-a-second summary, never averaged together
            await out.wait_for(lambda o: {x.model.version for x in o.summaries} >= {"1", "2"}, 10,
                               "summaries of v1 and v2")

    versions = {d.input_event_id: d.model.version for d in out.out.detections}
    assert versions[first[1][3].id] == "1"
    assert versions[second[0][3].id] == "2"
    assert versions[third[0][3].id] == "2"  # v3 was refused
    assert "invalid model announcement" in dlq_reason(out.out.dead[0])
    assert all(x.windows + x.skipped > 0 for x in out.out.summaries)


async def _until(predicate, what: str, timeout: float = 20.0) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_processor_starts_with_the_latest_announced_model(stack, tmp_path, run_processor):
    """A restarted processor serves what was announced, not the file it was configured with."""
    registry = ModelRegistry(tmp_path / "registry")
    default = toy_vision_model(tmp_path / "default.onnx", name="sky-vision", version="0")
    s = isolated_settings(stack.bootstrap_servers, vision_model=default,
                          vision_processor={"registry_root": str(registry.root)})
    await create_topics(s)
    await announce(s.kafka, s.topics.models, registry.publish(
        toy_vision_model(tmp_path / "v5.onnx", name="sky-vision", version="5")))
    async with run_processor(s, "vision") as svc:
        assert svc.slot.current.ref.version == "5"
