"""Publishing puts the model in the registry and announces it on the real `models` topic."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer

from detectors.testing import toy_audio_model
from skysentry.config import Settings
from skysentry.messages import ModelAnnouncement, decode_structured
from trainer.publish import announce, publish_model


async def test_publish_announces_on_models_topic(stack, tmp_path):
    topic = f"models-{uuid.uuid4().hex[:8]}"
    settings = Settings(kafka={"bootstrap_servers": stack.bootstrap_servers}, topics={"models": topic})
    model = toy_audio_model(tmp_path / "m" / "audio.onnx", name="audio", version="7")
    ann = publish_model(model, tmp_path / "registry")
    assert (tmp_path / "registry" / "audio" / "7" / "audio.onnx").is_file()
    assert await announce(ann, settings)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=stack.bootstrap_servers, auto_offset_reset="earliest",
                                group_id=f"t-{uuid.uuid4().hex[:6]}")
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    assert record.key == b"audio"
    _, got = decode_structured(record.value, ModelAnnouncement)
    assert got == ann


async def test_announce_without_broker_reports_false(tmp_path):
    settings = Settings(kafka={"bootstrap_servers": "127.0.0.1:1", "request_timeout_ms": 2000})
    model = toy_audio_model(tmp_path / "m" / "audio.onnx", name="audio", version="8")
    ann = publish_model(model, tmp_path / "registry")
    assert not await announce(ann, settings, timeout_s=3)
