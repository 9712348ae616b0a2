"""Redis data loss (issue 12, "state that survives"): a Redis that comes back empty (no marker
key) makes alerting rebuild the open alerts from the ``alerts`` topic. Without it the drone
still in the sky fired a second alert under a new id and the first one never resolved. Real
Kafka, the service, a Redis of the test's own (it is flushed)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from alerting.rebuild import marker_key
from alerting.state import fingerprint
from skysentry.config import RedisSettings

pytestmark = pytest.mark.integration


async def test_after_redis_lost_everything_the_open_alert_is_rebuilt_and_resolves_once(
        make_settings, receiver, producer, kit, topics, own_redis, uid):
    settings = make_settings({"hook": {"type": "webhook", "url": receiver.url("/hook")}}, resolve_after=2.0,
                             stale_after=0)
    settings = settings.model_copy(update={"redis": RedisSettings(url=own_redis)})
    redis = aioredis.from_url(own_redis, decode_responses=True)
    prefix = settings.alerting.key_prefix
    fp = fingerprint("north", "cam-1", "drone")
    try:
        async with kit.running(settings):  # resolved alerts of another camera stay resolved
            await kit.send_burst(producer, topics.detections, "north", "cam-9", count=5, seq0=0)
            await receiver.await_for(2, "/hook", timeout=20)  # firing, resolved
        async with kit.running(settings, replicas=1):
            await kit.send_burst(producer, topics.detections, "north", "cam-1", count=5, seq0=100)
            await receiver.await_for(3, "/hook", timeout=20)  # cam-1 firing
            first_id = await redis.hget(f"{prefix}:alert:{fp}", "alert_id")
            assert await redis.get(marker_key(prefix))
        await redis.flushall()  # Redis lost everything while the drone was still in the sky

        async with kit.running(settings):
            snap = await redis.hgetall(f"{prefix}:alert:{fp}")
            assert snap["alert_id"] == first_id and snap["status"] == "firing" and snap.get("rebuilt") == "1"
            assert not await redis.exists(f"{prefix}:alert:{fingerprint('north', 'cam-9', 'drone')}")
            await kit.send_burst(producer, topics.detections, "north", "cam-1", count=5, seq0=200)  # still there
            await receiver.await_for(4, "/hook", timeout=20)  # then gone: resolved, once
            events = kit.alert_events(await kit.read_topic(topics.alerts, at_least=4, settle=1.0))
    finally:
        await redis.aclose()

    cam1 = [(b["event"], b["alert"]["alert_id"]) for b in (r.json() for r in receiver.requests("/hook"))
            if b["alert"]["source"] == "cam-1"]
    assert cam1 == [("firing", first_id), ("resolved", first_id)]  # one alert, not a second firing
    on_topic = [(e.event, e.alert_id) for e in events if e.source == "cam-1"]
    assert on_topic == [("firing", first_id), ("resolved", first_id)]
    keys = [r.headers["idempotency-key"] for r in receiver.requests("/hook")]
    assert len(set(keys)) == len(keys)
