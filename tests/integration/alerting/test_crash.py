"""Fault drill: ``kill -9`` between the outbox write and the send (a real subprocess).

The crash point is the test-only hook ``SKYSENTRY_ALERTING_CRASH_AFTER_OUTBOX_WRITE=1``
(alerting/faults.py): the process ``os._exit(137)``s right after a decision wrote its
notifications to the outbox, before any is sent — what ``kill -9`` at the worst moment does.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alerting.faults import CRASH_AFTER_OUTBOX_WRITE

pytestmark = pytest.mark.integration

SECRET = "drill-secret-5f2c9a"


def start(config: Path, log: Path, *, crash: bool) -> subprocess.Popen:
    env = dict(os.environ)
    env["SKYSENTRY_ALERTING__CHANNELS__HOOK__SECRET"] = SECRET
    env.pop(CRASH_AFTER_OUTBOX_WRITE, None)
    if crash:
        env[CRASH_AFTER_OUTBOX_WRITE] = "1"
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "alerting", "run", "--config", str(config)],
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=Path(__file__).resolve().parents[3])


async def wait_exit(proc: subprocess.Popen, timeout: float) -> int:
    for _ in range(int(timeout / 0.1)):
        if proc.poll() is not None:
            return proc.returncode
        await asyncio.sleep(0.1)
    proc.kill()
    raise TimeoutError(f"process {proc.pid} still running after {timeout:g} s")


async def test_kill_after_outbox_write_then_restart_delivers_exactly_once(make_settings, receiver, producer, kit,
                                                                         topics, redis, tmp_path):
    settings = make_settings({"hook": {"type": "webhook", "url": receiver.url("/hook")}}, resolve_after=60)
    doc = {"topics": settings.topics.model_dump(), "metrics": {"enabled": False},
           "alerting": settings.alerting.model_dump(mode="json", by_alias=True, exclude={"channels"})
           | {"channels": {"hook": {"type": "webhook", "url": receiver.url("/hook")}}}}
    config = tmp_path / "alerting.yaml"
    config.write_text(yaml.safe_dump(doc))
    log = tmp_path / "alerting.log"

    first = start(config, log, crash=True)
    try:
        await kit.send_burst(producer, topics.detections, "north", "cam-1", count=5, gap_s=0.02)
        assert await wait_exit(first, 60) == 137
    finally:
        if first.poll() is None:
            first.kill()
    assert receiver.requests() == []  # died before sending
    prefix = settings.alerting.key_prefix
    assert await redis.zcard(f"{prefix}:obq:hook") == 1  # but the decision is in the outbox

    second = start(config, log, crash=False)
    try:
        (got,) = await receiver.await_for(1, "/hook", timeout=60)
        await asyncio.sleep(2.0)  # consumer replays the burst, timers run: nothing new may be sent
        assert len(receiver.requests("/hook")) == 1
        assert got.json()["event"] == "firing"
        assert await redis.zcard(f"{prefix}:obq:hook") == 0
    finally:
        second.send_signal(signal.SIGTERM)
        rc = await wait_exit(second, 30)
    assert rc == 0
    events = kit.alert_events(await kit.read_topic(topics.alerts, at_least=1, settle=0.5))
    assert [e.event for e in events] == ["firing"]

    text = log.read_text()
    assert "fault drill" in text and "notification delivered" in text
    assert SECRET not in text  # secrets never reach a log
