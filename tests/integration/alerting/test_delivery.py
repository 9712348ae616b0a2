"""The whole service on the real broker, real Redis and real HTTP receivers on loopback."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY

from alerting.channels.webhook import verify_signature
from skysentry.messages import Alert
from skysentry.topics import dlq

pytestmark = pytest.mark.integration

SECRET = "whsec-test-0123456789"


def all_channels(rx) -> dict:
    return {
        "hook": {"type": "webhook", "url": rx.url("/hook"), "secret": SECRET},
        "slack": {"type": "slack", "url": rx.url("/slack/T000/B000/XXXX")},
        "sms": {"type": "twilio", "base_url": rx.url("/twilio"), "account_sid": "AC123", "auth_token": "tw-token",
                "from": "+15550100", "to": ["+15550111", "+15550122"]},
        "apprise": {"type": "apprise", "urls": [f"json://127.0.0.1:{rx.port}/apprise"]},
    }


async def test_burst_gives_one_notification_per_channel_then_one_resolved(make_settings, receiver, producer, kit,
                                                                         topics):
    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = {"sent": sample("skysentry_alerting_notifications_sent_total", channel="sms"),
              "dedup": sample("skysentry_alerting_dedup_hits_total", reason="active_alert"),
              "lat": sample("skysentry_alerting_delivery_latency_seconds_count", channel="hook")}
    settings = make_settings(all_channels(receiver))
    async with kit.running(settings):
        sent = await kit.send_burst(producer, topics.detections, "north", "cam-1", count=15, gap_s=0.03)
        t_last = time.time()
        firing = await receiver.await_for(5, timeout=20)  # hook, slack, apprise, 2 SMS
        resolved = await receiver.await_for(10, timeout=20)  # resolve_after 2 s later
        await asyncio.sleep(1.0)  # and nothing more
        got = receiver.requests()

    assert len(got) == 10, [(r.path, r.body[:80]) for r in got]
    by_path = {p: [r for r in got if r.path.startswith(p)] for p in ("/hook", "/slack", "/twilio", "/apprise")}
    assert {p: len(v) for p, v in by_path.items()} == {"/hook": 2, "/slack": 2, "/twilio": 4, "/apprise": 2}
    assert firing[0].at - t_last < 3.0

    # webhook: signed, idempotency key, one firing then one resolved, lineage back to the detections
    hooks = by_path["/hook"]
    for r in hooks:
        assert verify_signature(SECRET, r.headers["x-skysentry-timestamp"], r.body, r.headers["x-skysentry-signature"])
        assert not verify_signature("wrong", r.headers["x-skysentry-timestamp"], r.body,
                                    r.headers["x-skysentry-signature"])
        assert r.headers["idempotency-key"] == r.json()["idempotency_key"]
    docs = [r.json() for r in hooks]
    assert [d["event"] for d in docs] == ["firing", "resolved"]
    assert docs[0]["alert"]["severity"] == "warning" and docs[0]["alert"]["status"] == "firing"
    assert docs[1]["alert"]["status"] == "resolved" and docs[1]["alert"]["ends_at"]
    assert set(docs[0]["alert"]["detection_ids"]) <= {d.id for d in sent}
    assert docs[0]["evidence"]["model"] == "vision-drone 3"
    keyed = [r for r in got if not r.path.startswith("/apprise")]  # Apprise sends no custom headers
    assert len({r.headers["idempotency-key"] for r in keyed}) == len(keyed) == 8

    # Slack: Block Kit with what, where, confidence, first seen
    slack = by_path["/slack"][0].json()
    assert slack["blocks"][0]["type"] == "header" and "north" in slack["text"]
    assert "*Confidence*" in str(slack["blocks"]) and "*First seen*" in str(slack["blocks"])

    # Twilio: form per number, basic auth
    forms = [r.form() for r in by_path["/twilio"]]
    assert sorted(f["To"] for f in forms) == ["+15550111", "+15550111", "+15550122", "+15550122"]
    assert all(f["From"] == "+15550100" and len(f["Body"]) <= 160 for f in forms)
    assert all(r.path == "/twilio/2010-04-01/Accounts/AC123/Messages.json" for r in by_path["/twilio"])
    assert by_path["/twilio"][0].headers["authorization"].startswith("Basic ")

    # Apprise's json:// service
    assert "north" in by_path["/apprise"][0].json()["title"]

    # metrics: sent per channel, dedup hits (the burst after confirmation), delivery latency
    assert sample("skysentry_alerting_notifications_sent_total", channel="sms") - before["sent"] == 4
    assert sample("skysentry_alerting_dedup_hits_total", reason="active_alert") - before["dedup"] >= 10
    assert sample("skysentry_alerting_delivery_latency_seconds_count", channel="hook") - before["lat"] == 2

    # the alerts topic: CloudEvents, key = fingerprint, firing then resolved
    records = await kit.read_topic(topics.alerts, at_least=2, settle=0.5)
    events = kit.alert_events(records)
    assert [e.event for e in events] == ["firing", "resolved"] and all(isinstance(e, Alert) for e in events)
    assert records[0].key.decode() == events[0].fingerprint
    assert dict(records[0].headers)["content-type"] == b"application/cloudevents+json"


async def test_malformed_detections_go_to_the_dlq_and_the_partition_keeps_moving(make_settings, receiver, producer,
                                                                                kit, topics):
    settings = make_settings({"hook": {"type": "webhook", "url": receiver.url("/hook")}})
    async with kit.running(settings):
        bad = [b"\xff\xfe not json", b"[1, 2]", b'{"specversion": "1.0"}',
               b'{"specversion":"1.0","id":"x","source":"s","type":"skysentry.detection.v1","time":'
               b'"2026-01-01T00:00:00Z","datacontenttype":"application/json","data":{"site":"n","score":7}}',
               b'{"specversion":"1.0","id":"y","source":"s","type":"skysentry.sighting.v9","time":'
               b'"2026-01-01T00:00:00Z","datacontenttype":"application/json","data":{}}']
        structured = [("content-type", b"application/cloudevents+json")]  # as every SkySentry producer sends them
        for value in bad:
            await producer.send_and_wait(topics.detections, value, key=b"cam-1", headers=structured)
        await kit.send_summary(producer, topics.detections, "north", "cam-1")  # read, not dead-lettered
        await kit.send_burst(producer, topics.detections, "north", "cam-1", count=5)
        await receiver.await_for(1, "/hook", timeout=20)
        records = await kit.read_topic(dlq(topics.detections), at_least=len(bad), settle=0.5)
    assert len(records) == len(bad)
    reasons = [dict(r.headers)["error"].decode() for r in records]
    assert any("not JSON" in e for e in reasons) and any("cannot read event type" in e for e in reasons)
    assert any("score" in e or "field required" in e.lower() for e in reasons)
    assert sorted(r.value for r in records) == sorted(bad)
    assert all(dict(r.headers)["dlq_topic"].decode() == topics.detections for r in records)


async def test_a_failing_channel_is_retried_with_backoff_then_dead_lettered_while_others_deliver_on_time(
        make_settings, receiver, producer, kit, topics, redis):
    receiver.respond("/bad", [500])
    channels = {
        "bad": {"type": "webhook", "url": receiver.url("/bad"), "max_attempts": 4, "backoff_initial": 0.3,
                "backoff_jitter": 0.0, "breaker_failures": 10},
        "good": {"type": "webhook", "url": receiver.url("/good")},
        "slack": {"type": "slack", "url": receiver.url("/slack")},
    }
    settings = make_settings(channels, resolve_after=60)  # only the firing notification in this test
    async with kit.running(settings) as (service,):
        await asyncio.wait_for(service.assigned.wait(), 30)
        await kit.send_burst(producer, topics.detections, "north", "cam-7", count=3, gap_s=0)
        t_sent = time.time()
        good = await receiver.await_for(1, "/good", timeout=20)
        slack = await receiver.await_for(1, "/slack", timeout=20)
        bad = await receiver.await_for(4, "/bad", timeout=20)
        await asyncio.sleep(1.0)
        dead = [d for d in await redis.lrange(f"{settings.alerting.key_prefix}:dead", 0, -1)]
    bad = receiver.requests("/bad")
    # the healthy channels were not held back by the failing one: delivered promptly, long
    # before the failing channel's first retry
    assert good[0].at - t_sent < 2.5 and slack[0].at - t_sent < 2.5
    assert good[0].at < bad[1].at and slack[0].at < bad[1].at
    assert len(bad) == 4  # max_attempts, then no more
    gaps = [b.at - a.at for a, b in zip(bad, bad[1:])]
    assert gaps[0] >= 0.25 and gaps[1] >= 0.5 and gaps[2] >= 1.0, gaps  # 0.3, 0.6, 1.2: exponential
    assert len({r.headers["idempotency-key"] for r in bad}) == 1  # one notification, retried
    assert len(dead) == 1
    import json

    letter = json.loads(dead[0])
    assert letter["channel"] == "bad" and letter["attempts"] == 4 and "HTTP 500" in letter["error"]
    assert good[0].headers["idempotency-key"] != bad[0].headers["idempotency-key"]
    assert len(receiver.requests("/good")) == 1


@pytest.mark.parametrize("status", [400])
async def test_a_permanent_error_is_dead_lettered_at_once(make_settings, receiver, producer, kit, topics, redis,
                                                         status):
    receiver.respond("/hook", [status])
    settings = make_settings({"hook": {"type": "webhook", "url": receiver.url("/hook"), "backoff_initial": 0.1}},
                             resolve_after=60)
    async with kit.running(settings):
        await kit.send_burst(producer, topics.detections, "north", "cam-8", count=3, gap_s=0)
        await receiver.await_for(1, "/hook", timeout=20)
        for _ in range(40):
            if await redis.llen(f"{settings.alerting.key_prefix}:dead"):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
    assert len(receiver.requests("/hook")) == 1
    assert await redis.llen(f"{settings.alerting.key_prefix}:dead") == 1
