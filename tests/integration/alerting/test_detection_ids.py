"""A re-read input must collapse (issue 12, item 1): after a crash, a rebalance or a heartbeat
expiry a processor reads windows again and re-emits their detections. Their ids derive from the
input event id and the model version, so the re-run gives the same ids, and the alerting's
idempotent observe script counts each window once: one alert, no window counted twice, even
when the re-run scored the window a hair differently (batch-dependent float output).
The real vision pipeline (toy model), the real broker and Redis, the alerting service."""

from __future__ import annotations

import pytest

from alerting.state import AlertState, fingerprint
from detectors.registry import ModelSlot, load_detector
from detectors.testing import toy_vision_model
from detectors.vision import VisionDetectorConfig
from skysentry.messages import ModelRef, encode_structured
from stream_processors.core import InputRecord, detection_id
from stream_processors.testing import frame_record
from stream_processors.vision import VisionPipeline, VisionProcessorConfig

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    model = toy_vision_model(tmp_path_factory.mktemp("ids") / "v.onnx", name="toy-vision", version="1")
    config = VisionProcessorConfig(detector=VisionDetectorConfig(model=model), max_frame_age_s=None)
    return VisionPipeline(config, ModelSlot(load_detector(config.detector)))


def test_detection_id_names_input_and_model_version():
    v1, v2 = ModelRef(name="m", version="1"), ModelRef(name="m", version="2")
    assert detection_id("frame-a", v1) == detection_id("frame-a", v1)
    assert len({detection_id("frame-a", v1), detection_id("frame-b", v1), detection_id("frame-a", v2)}) == 3


async def test_a_window_processed_twice_gives_one_detection_id_and_counts_once(
        pipeline, make_settings, receiver, producer, kit, topics, redis, uid):
    frames = [frame_record("cam-1", seq, width=64, height=48) for seq in range(4)]
    records = [InputRecord("sensor.frames", 0, i, k, v, h) for i, (k, v, h, _) in enumerate(frames)]
    first = (await pipeline.process(records)).detections  # one batch of four
    again = [d for r in records[1:3] for d in (await pipeline.process([r])).detections]  # re-read, one by one
    assert len(first) == 4, "the toy model detects every white frame"
    assert [d.id for d in again] == [d.id for d in first[1:3]]
    assert [d.input_event_id for d in first] == [e.id for *_, e in frames]

    # the service reads the first run, then the re-read: one alert, each window once
    settings = make_settings({"hook": {"type": "webhook", "url": receiver.url("/hook")}}, resolve_after=60.0,
                             confirm={"k": 4, "n": 5, "threshold": 0.5, "horizon": 10})
    async with kit.running(settings):
        for d in [*first[:3], *again, first[3]]:  # the 4th window confirms only if replays did not count
            value, headers = encode_structured(d, source="test/vision")
            await producer.send_and_wait(topics.detections, value, key=b"cam-1", headers=headers)
        await receiver.await_for(1, "/hook", timeout=20)
        fp = fingerprint(first[0].site, "cam-1", "drone")
        state = AlertState(redis, settings.alerting)
        snap = await state.load(fp)
        assert snap is not None and snap.status == "firing"
        assert sorted(snap.detection_ids) == sorted(d.id for d in first)  # no window twice in the lineage

        # a re-run that scored a window slightly differently is still the same window
        drifted = first[2].model_copy(update={"score": first[2].score - 1e-6})
        assert [o.outcome for o in await state.observe_many([drifted])] == ["replay"]
    assert [r.json()["event"] for r in receiver.requests("/hook")] == ["firing"]
