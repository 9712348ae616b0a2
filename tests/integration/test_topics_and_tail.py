"""Against the real broker: topic creation leaves a group ready to join without an ERROR log,
and `skysentry tail --from-beginning` shows records written before it started (the demo's
closing hint)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid

from skysentry.bus import make_consumer, make_producer
from skysentry.config import KafkaSettings, TopicSettings
from skysentry.topics import ensure_topics


async def test_after_ensure_topics_a_group_joins_without_an_error_log(stack, caplog):
    kafka = KafkaSettings(bootstrap_servers=stack.bootstrap_servers)
    s = uuid.uuid4().hex[:8]
    topics = TopicSettings(frames=f"t.frames.{s}", audio=f"t.audio.{s}", detections=f"t.det.{s}",
                           alerts=f"t.alerts.{s}", models=f"t.models.{s}", partitions=2)
    group = f"g-{s}"
    caplog.set_level(logging.INFO)
    await ensure_topics(kafka, topics, groups=(group,))
    consumer = make_consumer(kafka, topics.detections, group_id=group)
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=3000)
        assert consumer.assignment(), "the group never got its partitions"
    finally:
        await consumer.stop()
    # ERROR is what a clean start must not log; a "marking the coordinator dead" WARNING while the
    # broker finishes loading __consumer_offsets can still come (aiokafka retries at once).
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("aiokafka")]
    assert not errors


async def test_tail_from_beginning_shows_records_written_before_it_started(stack):
    kafka = KafkaSettings(bootstrap_servers=stack.bootstrap_servers)
    topic = f"t.tail.{uuid.uuid4().hex[:8]}"
    producer = make_producer(kafka)
    await producer.start()
    try:
        for i in range(3):
            await producer.send_and_wait(topic, json.dumps({"n": i}).encode(), key=b"k")
    finally:
        await producer.stop()
    tail = [sys.executable, "-m", "skysentry.cli", "tail", topic, "--json", "--timeout-s", "3",
            "--bootstrap", stack.bootstrap_servers]
    old = subprocess.run(tail + ["--from-beginning"], capture_output=True, text=True, timeout=60)
    assert old.returncode == 0, old.stderr
    assert [json.loads(line)["offset"] for line in old.stdout.splitlines()] == [0, 1, 2]
    new = subprocess.run(tail, capture_output=True, text=True, timeout=60)
    assert new.returncode == 0 and new.stdout == "", "without --from-beginning only new records are shown"
