"""Alerts in the console, made by the real alerting service from detections on the real broker:
the card appears with its evidence snapshot, lineage (alert → detections → input events) and
timeline; acknowledging it writes the alert's Redis hash and the alerting then holds back its
repeats; silencing its source from the card writes the alerting's silence and the source's next
alert reaches the alerts topic but no receiver; expiring the silence lets it through."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import cv2
import httpx
import numpy as np
import pytest

from alerting.silences import SilenceStore
from skysentry.messages import Box, FrameEvent, encode_frame

pytestmark = pytest.mark.integration

BOX = Box(x1=0.25, y1=0.25, x2=0.6, y2=0.7, score=0.93, label="drone")


async def pass_of(producer, topics, kit, source: str, *, frames: int = 6, seq0: int = 0) -> list:
    """A drone pass: frames on the frames topic and, for each, a detection naming it."""
    sent = []
    for i in range(seq0, seq0 + frames):
        img = np.random.default_rng(i).integers(60, 120, (96, 128, 3)).astype(np.uint8)
        event = FrameEvent(source=source, site="north", time=datetime.now(timezone.utc), seq=i, width=128, height=96)
        key, value, headers = encode_frame(event, cv2.imencode(".jpg", img)[1].tobytes())
        await producer.send_and_wait(topics.frames, value, key=key, headers=headers)
        d = kit.detection("north", source, seq=i, input_event_id=event.id, captured_at=event.time, boxes=[BOX])
        await kit.send(producer, topics.detections, d, source)
        sent.append(d)
        await asyncio.sleep(0.02)
    return sent


async def card_of(http: httpx.AsyncClient, predicate) -> dict | None:
    doc = (await http.get("/api/alerts")).json()
    return next((c for c in doc["alerts"] if predicate(c)), None)


async def test_an_alert_card_has_its_snapshot_lineage_and_timeline_and_ack_holds_its_repeats(
        make_settings, console_server, producer, topics, receiver, kit, redis):
    settings = make_settings({"hook": {"type": "webhook", "url": receiver.url("/hook")}}, resolve_after=30,
                             route={"group_wait": 0.2, "repeat_interval": 1.0, "receivers": ["hook"]})
    server = console_server(settings)
    await server.wait_reading()
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http, kit.alerting(settings):
        t0 = time.monotonic()
        sent = await pass_of(producer, topics, kit, "cam-7")
        card = await kit.wait_until(lambda: card_of(http, lambda c: c["source"] == "cam-7" and c["snapshot"]),
                                    what="the alert card with its snapshot")
        shown_after = time.monotonic() - t0
        assert card["status"] == "firing" and card["severity"] == "warning" and card["sources"] == ["cam-7"]
        assert card["acknowledged"] is False and card["evidence_detection_id"] in {d.id for d in sent}

        # lineage: alert -> the detections that confirmed and refreshed it -> the frames they were made from
        by_id = {d.id: d for d in sent}
        assert [x["detection_id"] for x in card["lineage"]] == [d.id for d in sent]
        assert all(x["input_event_id"] == by_id[x["detection_id"]].input_event_id for x in card["lineage"])

        # the snapshot is the stored boxed frame, by a signed link the console serves
        assert card["snapshot"].startswith("/evidence/") and "sig=" in card["snapshot"]
        snap = await http.get(card["snapshot"])
        assert snap.status_code == 200 and snap.headers["content-type"] == "image/jpeg"
        assert cv2.imdecode(np.frombuffer(snap.content, np.uint8), cv2.IMREAD_COLOR).shape == (96, 128, 3)

        # the timeline has its events from the alerts topic, and the repeats flow to the receiver
        await receiver.await_for(2, "/hook", timeout=15)  # firing + a repeat (repeat_interval 1 s)
        card = await kit.wait_until(lambda: card_of(http, lambda c: c["alert_id"] == card["alert_id"] and {
            "confirmed", "firing", "repeat"} <= {t["event"] for t in c["timeline"]}), what="the timeline")

        # acknowledge it from the console, as the page's button does
        csrf = await kit.open_session(http)
        ack = await http.post(f"/api/alerts/{card['alert_id']}/ack", json={}, headers={"X-CSRF-Token": csrf})
        assert ack.status_code == 200 and ack.json()["outcome"] == "acknowledged", ack.text
        acked_at = time.time()
        raw = await redis.hgetall(f"{settings.alerting.key_prefix}:alert:{card['fingerprint']}")
        assert raw["ack_by"] == "local" and raw["alert_id"] == card["alert_id"]
        again = await http.post(f"/api/alerts/{card['alert_id']}/ack", json={}, headers={"X-CSRF-Token": csrf})
        assert again.json()["outcome"] == "already"

        await kit.send(producer, topics.detections, kit.detection("north", "cam-7", seq=40), "cam-7")  # still there
        await asyncio.sleep(3.0)  # three repeat intervals
        card = await card_of(http, lambda c: c["alert_id"] == card["alert_id"])
        assert card["acknowledged"] and card["ack"]["by"] == "local"
        assert "acknowledged" in [t["event"] for t in card["timeline"]]
        hooks = [r.json() for r in receiver.requests("/hook")]
        topic_repeats = [t for t in card["timeline"] if t["event"] == "repeat" and
                         datetime.fromisoformat(t["at"]).timestamp() > acked_at + 0.5]

    after = [h for h in hooks if datetime.fromisoformat(h["decided_at"]).timestamp() > acked_at + 0.5]
    assert after == [], [(h["event"], h["decided_at"]) for h in after]  # the receiver hears no more repeats
    assert topic_repeats, "the alerts topic still carries the lifecycle"
    print(f"\nconsole: detections sent -> alert card with snapshot in /api/alerts {shown_after:.2f} s")


async def test_silencing_a_source_from_its_card_mutes_its_next_alert_until_expired(
        make_settings, console_server, producer, topics, receiver, kit, redis):
    settings = make_settings({"hook": {"type": "webhook", "url": receiver.url("/hook")}}, resolve_after=1.5)
    server = console_server(settings)
    await server.wait_reading()
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http, kit.alerting(settings):
        await pass_of(producer, topics, kit, "cam-9")
        first = await kit.wait_until(lambda: card_of(http, lambda c: c["source"] == "cam-9"), what="the first alert")
        await receiver.await_for(1, "/hook", timeout=15)

        csrf = await kit.open_session(http, "/alerts")
        r = await http.post(f"/api/alerts/{first['alert_id']}/silence", json={"scope": "source", "duration": "15m"},
                            headers={"X-CSRF-Token": csrf})
        assert r.status_code == 201, r.text
        silence = r.json()
        stored = await SilenceStore(redis, settings.alerting.key_prefix).list()  # the alerting's own keys
        assert [(s.id, s.matchers, s.created_by) for s in stored] == [(silence["id"], ["source=cam-9"], "local")]
        assert 890 < silence["ends_in_s"] <= 900
        listed = (await http.get("/api/silences")).json()["silences"]
        assert [s["id"] for s in listed] == [silence["id"]]

        await kit.wait_until(lambda: card_of(http, lambda c: c["alert_id"] == first["alert_id"] and
                                             c["status"] == "resolved"), what="the first alert resolving")
        # the same source again: a new alert, on the alerts topic, but no notification
        await pass_of(producer, topics, kit, "cam-9", seq0=100)
        await pass_of(producer, topics, kit, "cam-10", seq0=100)  # not silenced: heard
        second = await kit.wait_until(lambda: card_of(http, lambda c: c["source"] == "cam-9" and
                                                      c["alert_id"] != first["alert_id"]), what="the second alert")
        assert second["silenced_by"] == silence["id"] and second["status"] == "firing"
        await receiver.await_for(2, "/hook", timeout=15)
        await asyncio.sleep(1.0)
        heard = [(h.json()["alert"]["source"], h.json()["event"], h.json()["alert"]["alert_id"])
                 for h in receiver.requests("/hook")]
        assert ("cam-9", "firing", second["alert_id"]) not in heard and ("cam-10", "firing") in [h[:2] for h in heard]

        # expiring the silence in the console: the source is heard again
        assert (await http.delete(f"/api/silences/{silence['id']}")).status_code == 403  # no CSRF token
        r = await http.delete(f"/api/silences/{silence['id']}", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200 and await SilenceStore(redis, settings.alerting.key_prefix).list() == []
        assert (await http.get("/api/silences")).json()["silences"] == []
        await pass_of(producer, topics, kit, "cam-9", seq0=200)
        await kit.wait_until(lambda: asyncio.sleep(0, result=any(
            h.json()["alert"]["source"] == "cam-9" and h.json()["event"] == "firing" and
            h.json()["alert"]["alert_id"] != first["alert_id"] for h in receiver.requests("/hook"))),
            timeout=15, what="cam-9 heard again once the silence ended")
