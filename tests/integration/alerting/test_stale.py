"""Silence is not absence (issue 12, item 3): an alert resolves only when its source's processor
has reported on it (score summaries, detections) for the whole resolve period. A processor that
goes quiet leaves the alert stale — shown in `alert status`, counted — with no resolve and no
"still active" until reports flow again. Real Kafka, real Redis, the whole service."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from alerting.cli import app
from alerting.config import AlertingSettings
from alerting.state import AlertSnapshot, AlertState, fingerprint

pytestmark = pytest.mark.integration


async def test_reports_are_tracked_for_sources_that_send_summaries_and_a_gap_starts_them_over(redis, uid):
    state = AlertState(redis, AlertingSettings(key_prefix=f"test:{uid}", stale_after=2.0))
    cam = AlertSnapshot({"fp": "x", "site": "north", "source": "cam-1"})
    await state.note_reports([("north", "cam-1", 0, False)])  # a detection alone: not tracked
    assert await state.coverage(cam) is None
    now = await state.now_ms()
    await state.note_reports([("north", "cam-1", 9000, True), ("north", "cam-1", 8000, True)])
    first = await state.coverage(cam)
    assert first.last_ms - first.since_ms == 1000 and abs(first.last_ms - (now - 8000)) < 500
    await state.note_reports([("north", "cam-1", 1000, False)])  # 7 s later: a gap beyond stale_after
    again = await state.coverage(cam)
    assert again.since_ms == again.last_ms and again.last_ms - first.last_ms >= 6500
    await state.note_reports([("north", "cam-1", 5000, True)])  # older than what is known: changes nothing
    assert await state.coverage(cam) == again


async def _heartbeat(producer, kit, topic: str, site: str, source: str, every: float = 0.15) -> None:
    while True:  # a processor's score summaries, until cancelled (the processor dies)
        await kit.send_summary(producer, topic, site, source)
        await asyncio.sleep(every)


def _events(receiver, site: str) -> list[str]:
    return [d["event"] for d in (r.json() for r in receiver.requests("/hook")) if d["alert"]["site"] == site]


async def test_a_quiet_processor_keeps_its_alert_stale_until_reports_flow_again(
        make_settings, receiver, producer, kit, topics, redis, monkeypatch):
    settings = make_settings({"hook": {"type": "webhook", "url": receiver.url("/hook")}},
                             route={"group_wait": 0.2, "repeat_interval": 2.5, "receivers": ["hook"]},
                             resolve_after=1.5, stale_after=0.6)
    stale_before = REGISTRY.get_sample_value("skysentry_alerting_alerts_stale_total") or 0.0
    prefix = settings.alerting.key_prefix
    south_key = f"{prefix}:alert:{fingerprint('south', 'cam-2', 'drone')}"
    beats = {site: asyncio.create_task(_heartbeat(producer, kit, topics.detections, site, cam))
             for site, cam in (("north", "cam-1"), ("south", "cam-2"))}
    try:
        async with kit.running(settings):
            await asyncio.sleep(0.5)
            await kit.send_burst(producer, topics.detections, "north", "cam-1", count=5)
            await kit.send_burst(producer, topics.detections, "south", "cam-2", count=5)
            beats["south"].cancel()  # the processor watching cam-2 dies with the drones gone
            # the watched camera's alert resolves after resolve_after; the other one must not
            await receiver.await_for(3, "/hook", timeout=20)
            await asyncio.sleep(4.0)  # well past resolve_after and the 2.5 s repeat interval
            assert _events(receiver, "north") == ["firing", "resolved"]
            assert _events(receiver, "south") == ["firing"]  # no resolved, no "still active"
            assert await redis.hget(south_key, "stale_ms")

            monkeypatch.setenv("SKYSENTRY_ALERTING__KEY_PREFIX", prefix)
            out = await asyncio.to_thread(CliRunner().invoke, app, ["status", "--json"])
            assert out.exit_code == 0, out.output
            firing = json.loads(out.output)["firing"]
            assert [(f["site"], f["state"]) for f in firing] == [("south", "stale")] and firing[0]["stale_since"]
            table = (await asyncio.to_thread(CliRunner().invoke, app, ["status"])).output
            assert f"{firing[0]['fingerprint']} stale since {firing[0]['stale_since']}" in table

            resumed = time.time()
            beats["south"] = asyncio.create_task(_heartbeat(producer, kit, topics.detections, "south", "cam-2"))
            await receiver.await_for(4, "/hook", timeout=20)  # resolved once it watched for resolve_after
            await asyncio.sleep(1.0)
    finally:
        for task in beats.values():
            task.cancel()
        for task in beats.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task

    assert _events(receiver, "south") == ["firing", "resolved"]
    assert not await redis.hget(south_key, "stale_ms")
    assert (REGISTRY.get_sample_value("skysentry_alerting_alerts_stale_total") or 0.0) == stale_before + 1
    resolved = next(r for r in receiver.requests("/hook") if r.json()["alert"]["site"] == "south"
                    and r.json()["event"] == "resolved")
    assert resolved.at - resumed >= 1.4  # resolve_after of unbroken reports after the gap, not at once


async def test_with_stale_after_0_an_alert_resolves_by_detections_alone(make_settings, receiver, producer, kit,
                                                                         topics, redis):
    settings = make_settings({"hook": {"type": "webhook", "url": receiver.url("/hook")}}, resolve_after=1.0,
                             stale_after=0)
    async with kit.running(settings):
        await kit.send_summary(producer, topics.detections, "north", "cam-1")  # then the processor dies
        await kit.send_burst(producer, topics.detections, "north", "cam-1", count=5)
        await receiver.await_for(2, "/hook", timeout=20)
    assert _events(receiver, "north") == ["firing", "resolved"]
    assert not await redis.exists(f"{settings.alerting.key_prefix}:rep")  # nothing tracked
