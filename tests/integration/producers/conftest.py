import uuid

import pytest

from skysentry.config import KafkaSettings, TopicSettings
from skysentry.topics import ensure_topics


@pytest.fixture
def kafka(stack) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=stack.bootstrap_servers)


@pytest.fixture
async def topics(kafka) -> TopicSettings:
    """Fresh topic names for one test, so tests never read each other's records."""
    s = uuid.uuid4().hex[:8]
    t = TopicSettings(frames=f"t.frames.{s}", audio=f"t.audio.{s}", detections=f"t.det.{s}",
                      alerts=f"t.alerts.{s}", models=f"t.models.{s}", partitions=4)
    await ensure_topics(kafka, t)
    return t


async def consume_all(kafka: KafkaSettings, topic: str, expect: int, timeout_s: float = 30.0) -> list:
    """Every record of ``topic`` (from the start) until ``expect`` arrived or the time is up."""
    import asyncio

    from skysentry.bus import make_consumer

    consumer = make_consumer(kafka, topic, group_id=None)
    await consumer.start()
    out = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(out) < expect and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out
