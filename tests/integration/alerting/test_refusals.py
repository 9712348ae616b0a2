"""The alerting refuses what it cannot know (the whole service, real broker and Redis):
detections dated beyond the clock-skew allowance in the future and records of an unknown or
missing content type go to detections.dlq with the reason and fire nothing; a valid detection
in CloudEvents binary mode (the value is the data, the attributes are ce_* headers) is read
and fires like a structured one."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest

from skysentry.messages import Detection, encode_structured, header
from skysentry.topics import dlq

pytestmark = pytest.mark.integration


def binary_mode(d: Detection) -> tuple[bytes, list[tuple[str, bytes]]]:
    """As the CloudEvents SDK's Kafka binding writes a binary-mode event."""
    headers = [("ce_specversion", b"1.0"), ("ce_id", d.id.encode()), ("ce_source", b"vendor/processor"),
               ("ce_type", Detection.CE_TYPE.encode()), ("ce_time", d.processed_at.isoformat().encode()),
               ("content-type", b"application/json; charset=utf-8")]
    return json.dumps(d.model_dump(mode="json")).encode(), headers


async def test_future_dates_and_unknown_content_types_are_dead_lettered_binary_mode_fires(
        make_settings, receiver, producer, kit, topics):
    settings = make_settings({"hook": {"type": "webhook", "url": receiver.url("/hook")}}, max_clock_skew="5s")
    topic = topics.detections
    a_year = datetime.now(timezone.utc) + timedelta(days=365)
    async with kit.running(settings):
        for i in range(6):  # would confirm three times over if its date were believed
            d = kit.detection("north", "cam-future", seq=i, captured_at=a_year)
            value, headers = encode_structured(d, source="test")
            await producer.send_and_wait(topic, value, key=b"cam-future", headers=headers)
        good, headers = encode_structured(kit.detection("north", "cam-odd", seq=0), source="test")
        await producer.send_and_wait(topic, good, key=b"cam-odd", headers=[("content-type", b"text/plain")])
        await producer.send_and_wait(topic, good, key=b"cam-odd", headers=[])
        dead = await kit.read_topic(dlq(topic), at_least=8, settle=1.0)
        assert receiver.requests() == []  # nothing fired from any of them

        sent = []
        for i in range(6):
            d = kit.detection("north", "cam-binary", seq=i)
            value, headers = binary_mode(d)
            await producer.send_and_wait(topic, value, key=b"cam-binary", headers=headers)
            sent.append(d)
            await asyncio.sleep(0.02)
        firing = await receiver.await_for(1, "/hook", timeout=20)

    reasons = [header(r.headers, "error") for r in dead]
    assert len(reasons) == 8, reasons
    assert sum("in the future (beyond max_clock_skew 5 s)" in r for r in reasons) == 6, reasons
    assert any("content-type 'text/plain' is not accepted" in r for r in reasons), reasons
    assert any("no content-type header" in r for r in reasons), reasons
    alert = firing[0].json()["alert"]
    assert alert["source"] == "cam-binary" and set(alert["detection_ids"]) <= {d.id for d in sent}
    assert {r.key for r in dead} == {b"cam-future", b"cam-odd"}


async def test_detections_older_than_the_horizon_are_dead_lettered_and_counted(
        make_settings, receiver, producer, kit, topics):
    """Issue 13 item 4: a backlog replayed (or a sender with a stopped clock) used to be skipped
    silently; now each is dead-lettered with the reason and counted, and nothing fires."""
    from alerting import metrics

    settings = make_settings({"hook": {"type": "webhook", "url": receiver.url("/hook")}}, max_detection_age="3s")
    too_old = metrics.DETECTIONS.labels("too_old")
    before, invalid_before = too_old._value.get(), metrics.INVALID._value.get()
    async with kit.running(settings):
        sent = await kit.send_burst(producer, topics.detections, "north", "cam-old", count=6, gap_s=0, age_s=30)
        dead = await kit.read_topic(dlq(topics.detections), at_least=6, settle=1.0)
        assert receiver.requests() == []
    reasons = [header(r.headers, "error") for r in dead]
    assert len(reasons) == 6 and all("beyond max_detection_age 3 s): too old to alert on" in r for r in reasons), reasons
    assert {json.loads(r.value)["id"] for r in dead} == {d.id for d in sent}
    assert too_old._value.get() - before == 6 and metrics.INVALID._value.get() - invalid_before == 6
