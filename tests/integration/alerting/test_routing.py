"""The routing tree end to end: matchers, `continue`, per-route timing (repeat)."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.integration


async def test_routes_pick_receivers_and_their_own_timing(make_settings, receiver, producer, kit, topics):
    channels = {
        "default": {"type": "webhook", "url": receiver.url("/default")},
        "north": {"type": "webhook", "url": receiver.url("/north")},
        "sms": {"type": "twilio", "base_url": receiver.url("/sms"), "account_sid": "AC1", "auth_token": "t",
                "from": "+15550100", "to": ["+15550111"]},
    }
    route = {"receivers": ["default"], "group_wait": 0.2, "repeat_interval": 3600, "routes": [
        {"name": "critical-sms", "match": {"severity": "critical"}, "receivers": ["sms"], "continue": True,
         "group_wait": 0},
        {"name": "north", "match": {"site": "north"}, "receivers": ["north"], "repeat_interval": "1s"},
    ]}
    settings = make_settings(channels, route=route, resolve_after=30)
    async with kit.running(settings):
        await asyncio.gather(
            kit.send_burst(producer, topics.detections, "north", "cam-n", count=26, gap_s=0.1),  # ~2.6 s
            kit.send_burst(producer, topics.detections, "south", "cam-s", "vision", count=4, gap_s=0.02),
            kit.send_burst(producer, topics.detections, "south", "mic-s", "audio", count=4, gap_s=0.02),
            kit.send_burst(producer, topics.detections, "east", "cam-e", count=4, gap_s=0.02))
        await asyncio.sleep(0.8)
    got = receiver.requests("/north")
    north = [r.json() for r in got]
    assert [d["event"] for d in north] == ["firing"] + ["repeat"] * (len(north) - 1) and len(north) >= 2
    gaps = [b.at - a.at for a, b in zip(got, got[1:])]
    assert min(gaps) >= 0.9, gaps  # the route's own repeat_interval (1 s), not the root's hour
    assert {d["alert"]["site"] for d in north} == {"north"} and {d["route"] for d in north} == {"north"}
    (sms,) = receiver.requests("/sms")
    assert "CRITICAL" in sms.form()["Body"] and "south" in sms.form()["Body"]
    default = [r.json() for r in receiver.requests("/default")]
    assert [(d["alert"]["site"], d["event"], d["route"]) for d in default] == [("east", "firing", "root")]


async def test_a_channel_on_two_routes_hears_each_event_once(make_settings, receiver, producer, kit, topics):
    """A camera alert fires on the root route (warning); the microphone corroborates it, so it
    escalates to critical and also matches the critical route. Both routes name the webhook:
    it hears firing (warning), firing on the critical route (the escalation), and then
    exactly one resolved — not one per route."""
    channels = {"hook": {"type": "webhook", "url": receiver.url("/hook")},
                "sms": {"type": "twilio", "base_url": receiver.url("/sms"), "account_sid": "AC1", "auth_token": "t",
                        "from": "+15550100", "to": ["+15550111"]}}
    route = {"receivers": ["hook"], "group_wait": 0, "repeat_interval": 3600, "routes": [
        {"name": "critical", "match": {"severity": "critical"}, "receivers": ["sms", "hook"]}]}
    settings = make_settings(channels, route=route, resolve_after=1.5, corroboration=5.0)
    async with kit.running(settings):
        await kit.send_burst(producer, topics.detections, "west", "cam-w", "vision", count=4, gap_s=0.02)
        await receiver.await_for(1, "/hook", timeout=15)
        await kit.send_burst(producer, topics.detections, "west", "mic-w", "audio", count=4, gap_s=0.02)
        await receiver.await_for(1, "/sms", timeout=15)
        await asyncio.sleep(4.0)  # resolve_after passes
    hook = [(d["event"], d["route"], d["alert"]["severity"]) for d in (r.json() for r in receiver.requests("/hook"))]
    assert hook[:2] == [("firing", "root", "warning"), ("firing", "critical", "critical")], hook
    assert [h[0] for h in hook[2:]] == ["resolved"], hook
    assert len(receiver.requests("/sms")) == 2  # firing + resolved: only the critical route has sms
