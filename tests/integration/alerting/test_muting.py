"""Corroboration, inhibition and silences, end to end."""

from __future__ import annotations

import asyncio

import pytest

from alerting.silences import SilenceStore

pytestmark = pytest.mark.integration


async def test_camera_and_microphone_together_make_one_critical_notification_and_camera_mutes_audio_only(
        make_settings, receiver, producer, kit, topics):
    settings = make_settings({"hook": {"type": "webhook", "url": receiver.url("/hook")}}, resolve_after=30)
    async with kit.running(settings):
        # site A: camera and microphone see the drone at the same time -> one corroborated alert
        await asyncio.gather(
            kit.send_burst(producer, topics.detections, "site-a", "cam-a", "vision", count=6, gap_s=0.02),
            kit.send_burst(producer, topics.detections, "site-a", "mic-a", "audio", count=6, gap_s=0.02))
        # site B: the camera saw it 3 s ago (outside the 1 s corroboration window); now only the
        # microphone hears it -> an audio-only alert, muted by the camera's
        await kit.send_burst(producer, topics.detections, "site-b", "cam-b", "vision", count=4, gap_s=0, age_s=3)
        await kit.send_burst(producer, topics.detections, "site-b", "mic-b", "audio", count=4, gap_s=0)
        await receiver.await_for(2, "/hook", timeout=20)
        await asyncio.sleep(1.5)
        records = await kit.read_topic(topics.alerts, at_least=3, settle=0.3)

    docs = [r.json() for r in receiver.requests("/hook")]
    by_site = {d["alert"]["site"]: d for d in docs}
    assert len(docs) == 2 and set(by_site) == {"site-a", "site-b"}, [d["alert"]["summary"] for d in docs]
    a = by_site["site-a"]["alert"]
    assert a["severity"] == "critical" and sorted(a["modalities"]) == ["audio", "vision"]
    assert sorted(by_site["site-a"]["sources"]) == ["cam-a", "mic-a"]
    assert by_site["site-b"]["alert"]["modalities"] == ["vision"]
    # the muted audio-only alert still exists for other systems: it is on the alerts topic
    events = kit.alert_events(records)
    assert sorted((e.site, tuple(e.modalities)) for e in events if e.event == "firing") == [
        ("site-a", ("vision", "audio")), ("site-b", ("audio",)), ("site-b", ("vision",))]


async def test_a_silence_mutes_and_expiring_it_lets_the_alert_through(make_settings, receiver, producer, kit,
                                                                       topics, redis):
    settings = make_settings({"hook": {"type": "webhook", "url": receiver.url("/hook")}}, resolve_after=30)
    silences = SilenceStore(redis, settings.alerting.key_prefix)
    silence = await silences.add(["site=north", "source=~cam-.*"], duration_s=600, created_by="test")
    async with kit.running(settings):
        await kit.send_burst(producer, topics.detections, "north", "cam-1", count=4, gap_s=0)
        await kit.send_burst(producer, topics.detections, "south", "cam-2", count=4, gap_s=0)
        await receiver.await_for(1, "/hook", timeout=20)
        await kit.read_topic(topics.alerts, at_least=2)  # both alerts fire on the topic...
        await asyncio.sleep(1.0)
        assert [r.json()["alert"]["site"] for r in receiver.requests("/hook")] == ["south"]  # ...one is muted
        assert await silences.expire(silence.id)
        got = await receiver.await_for(2, "/hook", timeout=10)
        await asyncio.sleep(0.8)
    assert [r.json()["alert"]["site"] for r in receiver.requests("/hook")] == ["south", "north"]
    assert got[1].json()["event"] == "firing"
