"""Broker outage drill (issue 12, item 4) on a broker of the test's own (it is stopped; the
session's broker is shared by parallel tests): while Kafka is down the alerting service must
not say "still active" about what it cannot see, must not flood its log, and must exit within
its shutdown grace on SIGTERM, saying what it did not deliver. A real ``skysentry alert run``
subprocess, real Redis, a webhook receiver on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import yaml

from alerting.testing import json_log_lines
from deploy.local import stack as local_stack
from skysentry.bus import make_producer
from skysentry.config import KafkaSettings, TopicSettings
from skysentry.topics import ensure_topics

pytestmark = pytest.mark.integration

GRACE_S = 3.0


def _start(config: Path, log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "alerting", "run", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[3],
                                env={k: v for k, v in os.environ.items()
                                     if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")})


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout:g} s"
        await asyncio.sleep(0.1)


async def test_broker_down_no_still_active_no_log_flood_exit_within_grace(own_stack, receiver, kit, tmp_path, uid):
    topics = TopicSettings(detections=f"o-{uid}.detections", alerts=f"o-{uid}.alerts", partitions=3)
    kafka = KafkaSettings(bootstrap_servers=own_stack.bootstrap_servers)
    await ensure_topics(kafka, topics, groups=(f"outage-{uid}",))
    doc = {"kafka": {"bootstrap_servers": own_stack.bootstrap_servers},
           "redis": {"url": own_stack.redis_url}, "topics": topics.model_dump(), "metrics": {"enabled": False},
           "alerting": {"key_prefix": f"outage:{uid}", "group_id": f"outage-{uid}", "resolve_after": 120,
                        "confirm": {"k": 3, "n": 5, "threshold": 0.6, "horizon": 10}, "behind_after": 2,
                        "tick_poll": 0.05, "outbox": {"lease": 8, "poll": 0.05}, "shutdown_grace": GRACE_S,
                        "channels": {"hook": {"type": "webhook", "url": receiver.url("/hook"), "timeout": 2}},
                        "route": {"group_wait": 0.2, "repeat_interval": 2, "receivers": ["hook"]}}}
    config = tmp_path / "alerting.yaml"
    config.write_text(yaml.safe_dump(doc))
    log = tmp_path / "alerting.log"
    proc = _start(config, log)
    producer = make_producer(kafka)
    await producer.start()
    try:
        await _until(lambda: any(r.get("event") == "assigned" and r.get("partitions") for r in json_log_lines(log)),
                     60, "alerting owns partitions")
        await kit.send_burst(producer, topics.detections, "north", "cam-1", count=5)
        await receiver.await_for(2, "/hook", timeout=30)  # firing, then a repeat 2 s later: reading is current
        receiver.respond("/hook", [500])  # the receiver fails too: a second drone's firing stays undelivered
        await kit.send_burst(producer, topics.detections, "north", "cam-2", count=5)
        await _until(lambda: any(r.json()["alert"]["source"] == "cam-2" for r in receiver.requests("/hook")),
                     30, "the second alert's firing tried")
        await producer.stop()
        producer = None

        local_stack.stop_kafka(own_stack.state_dir)
        down_at, lines_before = time.time(), len(log.read_text().splitlines())
        await asyncio.sleep(12.0)  # six repeat intervals
        held_from = down_at + 2 + 0.5 + 1  # behind_after, the recheck, a margin
        during = [r for r in receiver.requests("/hook")
                  if datetime.fromisoformat(r.json()["decided_at"]).timestamp() > held_from]
        lines = len(log.read_text().splitlines()) - lines_before

        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        rc = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 60)
        took = time.monotonic() - t0
    finally:
        if producer is not None:
            await producer.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    stopped = [r for r in json_log_lines(log) if str(r.get("msg", "")).startswith("alerting stopped")]
    redis = aioredis.from_url(own_stack.redis_url, decode_responses=True)
    try:
        queued = {ch: await redis.zcard(f"outage:{uid}:obq:{ch}") for ch in ("hook", "_alerts")}
    finally:
        await redis.aclose()
    print(f"\nbroker outage: {lines} log lines in 12 s down; SIGTERM to exit {took:.1f} s (grace {GRACE_S:g} s); "
          f"'still active' while down: {len(during)}; undelivered at stop: {queued}")
    assert during == [], "no 'still active' repeat while the detections stream cannot be read"
    assert lines < 120, f"{lines} log lines in 12 s of outage"
    assert rc == 0 and took < GRACE_S + 6.0, f"exit {rc} after {took:.1f} s"
    assert stopped, "the last line says how it stopped"
    assert queued["hook"] >= 1 and stopped[-1]["undelivered"] == {ch: n for ch, n in queued.items() if n}
