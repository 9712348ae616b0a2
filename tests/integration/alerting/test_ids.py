"""Every incursion gets its own keys and event ids: one fingerprint firing again after its
resolved alert expired from Redis (``alert_retention``), or after Redis lost everything, must
never reuse an ``Idempotency-Key`` or a ``ce_id`` — a receiver that drops repeated keys would
silently drop a real incursion (issue 12, item 1). Real Kafka, the service, and a Redis of the
test's own (it gets flushed)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from alerting.state import fingerprint
from skysentry.config import RedisSettings
from skysentry.messages import decode_structured

pytestmark = pytest.mark.integration


async def _gone(redis: aioredis.Redis, key: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await redis.exists(key):
        assert loop.time() < deadline, f"{key} did not expire within {timeout:g} s"
        await asyncio.sleep(0.2)


async def test_an_incursion_after_expiry_or_data_loss_never_reuses_a_key_or_event_id(
        make_settings, receiver, producer, kit, topics, own_redis, uid):
    settings = make_settings({"hook": {"type": "webhook", "url": receiver.url("/hook")}},
                             resolve_after=1.0, alert_retention=1.5)
    settings = settings.model_copy(update={"redis": RedisSettings(url=own_redis)})
    redis = aioredis.from_url(own_redis, decode_responses=True)
    alert_key = f"test:{uid}:alert:{fingerprint('north', 'cam-1', 'drone')}"
    passes, flushed_before = 5, 3  # passes 0-2 after expiry, then FLUSHALL, then passes 3-4
    try:
        async with kit.running(settings):
            for i in range(passes):
                if i == flushed_before:
                    await redis.flushall()
                await kit.send_burst(producer, topics.detections, "north", "cam-1", count=6, seq0=100 * i)
                await receiver.await_for(2 * (i + 1), "/hook", timeout=20)  # firing, then resolved
                assert await redis.hget(alert_key, "inc") == "1"  # the counter started over every time
                await _gone(redis, alert_key)  # expired: the next pass is a new incarnation
    finally:
        await redis.aclose()

    hooks = receiver.requests("/hook")
    docs = [r.json() for r in hooks]
    assert [d["event"] for d in docs] == ["firing", "resolved"] * passes
    keys = [r.headers["idempotency-key"] for r in hooks]
    assert len(set(keys)) == len(keys) == 2 * passes, keys

    events = [decode_structured(r.value) for r in await kit.read_topic(topics.alerts, at_least=2 * passes,
                                                                        settle=0.5)]
    ce_ids = [envelope.id for envelope, _ in events]
    assert len(set(ce_ids)) == len(ce_ids) == 2 * passes, ce_ids
    assert not set(ce_ids) & set(keys)  # the topic and the webhook are told apart too

    # one alert_id per incursion, shared by its firing and resolved, time-ordered, never reused
    alert_ids = [a.alert_id for _, a in events]
    per_pass = [alert_ids[2 * i:2 * i + 2] for i in range(passes)]
    assert all(a == b for a, b in per_pass), per_pass
    firsts = [a for a, _ in per_pass]
    assert len(set(firsts)) == passes and firsts == sorted(firsts)
    assert all(uuid.UUID(a).version == 7 for a in firsts)
    assert [d["alert"]["alert_id"] for d in docs] == alert_ids
