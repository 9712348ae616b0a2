"""An event on the `alerts` topic is written once even when attempts time out while the broker
is frozen: the delivery stage gives up on an attempt after its timeout, but the record stays in
the Kafka client's buffer and is written when the broker answers again, so a retry that sent it
anew wrote it twice (the broker-frozen drill once saw four copies of one firing)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import datetime, timedelta, timezone

import pytest

from alerting.events import AlertsTopicChannel
from alerting.notification import Notification
from skysentry.bus import make_consumer, make_producer
from skysentry.config import KafkaSettings, TopicSettings
from skysentry.messages import Alert
from skysentry.topics import ensure_topics

pytestmark = pytest.mark.integration


def firing(key: str) -> Notification:
    t0 = datetime.now(timezone.utc)
    alert = Alert(fingerprint="fp-1", event="firing", status="firing", severity="critical", site="north",
                  source="cam-1", label="drone", modalities=["vision"], max_score=0.9, starts_at=t0,
                  last_seen_at=t0, detection_ids=["d1"], summary="drone at site north")
    return Notification(idempotency_key=key, channel="_alerts", route="", event="firing", alert=alert,
                        sources=["cam-1"], decided_at=t0 + timedelta(milliseconds=5))


async def test_attempts_that_time_out_while_the_broker_is_frozen_write_the_event_once(own_stack):
    kafka = KafkaSettings(bootstrap_servers=own_stack.bootstrap_servers, request_timeout_ms=30_000)
    topics = TopicSettings(alerts="retry.alerts", partitions=1)
    await ensure_topics(kafka, topics)
    producer = make_producer(kafka)
    await producer.start()
    channel = AlertsTopicChannel(producer, topics.alerts, "test", timeout_s=0.5)
    pid = json.loads((own_stack.state_dir / "stack.json").read_text())["kafka"]["pid"]
    try:
        n = firing("key-frozen")
        os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(3):  # what the delivery stage does: an attempt, its timeout, a retry
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(channel.send(n), timeout=0.5)
        finally:
            os.kill(pid, signal.SIGCONT)
        await asyncio.wait_for(channel.send(n), timeout=30)  # the broker answers: the attempt succeeds
        await channel.send(firing("key-after"))  # and the channel goes on
    finally:
        await producer.stop()

    consumer = make_consumer(kafka, topics.alerts, group_id=None)
    await consumer.start()
    ids = []
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while asyncio.get_running_loop().time() < deadline and "key-after" not in ids:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                ids += [dict(r.headers).get("ce_id", b"").decode() or json.loads(r.value)["id"] for r in records]
    finally:
        await consumer.stop()
    assert ids.count("key-frozen") == 1, ids
    assert ids.count("key-after") == 1, ids
