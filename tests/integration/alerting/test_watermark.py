"""An alert resolves after ``resolve_after`` without detections *written*, not merely read:
detections that pile up while the service is down keep the alert firing once it is back."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from alerting.state import fingerprint

pytestmark = pytest.mark.integration


async def test_detections_written_while_the_service_was_down_keep_the_alert_firing(make_settings, receiver,
                                                                                   producer, kit, topics, redis):
    settings = make_settings({"hook": {"type": "webhook", "url": receiver.url("/hook")}}, resolve_after=2.0)
    # a drone in view for ~7 s: a detection every 0.2 s
    drone = asyncio.create_task(kit.send_burst(producer, topics.detections, "north", "cam-1", count=35, gap_s=0.2))
    async with kit.running(settings):
        await receiver.await_for(1, "/hook", timeout=20)
    await asyncio.sleep(4.0)  # the service is down for twice resolve_after while the drone is still seen

    async with kit.running(settings):
        # back up: the resolve timer is long due, but the backlog says the drone never left;
        # it resolves resolve_after after the last detection is read, once
        await drone
        await receiver.await_for(2, "/hook", timeout=20)
        await asyncio.sleep(1.0)  # and nothing after it
        assert 0 <= REGISTRY.get_sample_value("skysentry_alerting_read_lag_seconds") < 5  # caught up
    events = [r.json()["event"] for r in receiver.requests("/hook")]
    assert events == ["firing", "resolved"]
    alert = await redis.hgetall(f"{settings.alerting.key_prefix}:alert:{fingerprint('north', 'cam-1', 'drone')}")
    assert alert["inc"] == "1"  # one incarnation: it was never resolved and fired again
    assert int(alert["ends_ms"]) - int(alert["last_obs_ms"]) >= 2000
