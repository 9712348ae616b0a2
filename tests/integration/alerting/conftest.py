"""Fixtures for alerting's integration tests: real Kafka and Redis (the session ``stack``),
real HTTP receivers on loopback, unique topics, consumer groups and Redis prefixes per test
so any number of sessions can share one broker and one Redis."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest

from alerting.config import AlertingServiceSettings
from alerting.service import AlertingService
from alerting.testing import RecordingReceiver
from deploy.local import stack as local_stack
from skysentry.bus import make_consumer
from skysentry.config import TopicSettings
from skysentry.messages import Detection, ModelRef, ScoreSummary, decode_structured, encode_structured


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def own_redis(tmp_path):
    """A Redis of this test alone, started by the local stack's own helper (in
    ``tmp_path/"redis"``), for drills that flush, kill or reconfigure it; returns its URL."""
    state = tmp_path / "redis"
    url = local_stack.start_redis(state, port=0)
    try:
        yield url
    finally:
        local_stack.down(state)


@pytest.fixture
def own_stack(tmp_path):
    """A Kafka and a Redis of this test alone (started by the local stack's own code), for
    drills that stop, freeze or kill the broker."""
    state = tmp_path / "own-stack"
    info = local_stack.up(state, kafka_port=0, redis_port=0, use_env=False)
    try:
        yield info
    finally:
        local_stack.down(state)


@pytest.fixture
def receiver() -> RecordingReceiver:
    with RecordingReceiver() as rx:
        yield rx


@pytest.fixture
def topics(uid) -> TopicSettings:
    return TopicSettings(detections=f"t-{uid}.detections", alerts=f"t-{uid}.alerts", partitions=3)


@pytest.fixture
def make_settings(stack, uid, topics):
    """Settings for one test: short timings, unique names; ``channels``/``route`` and any
    ``alerting`` field can be given."""

    def make(channels: dict, route: dict | None = None, **alerting) -> AlertingServiceSettings:
        section = {
            "key_prefix": f"test:{uid}", "group_id": f"alerting-{uid}", "resolve_after": 2.0,
            "corroboration": 1.0, "confirm": {"k": 3, "n": 5, "threshold": 0.6, "horizon": 10},
            "tick_poll": 0.05, "mute_recheck": 0.3, "outbox": {"lease": 8, "poll": 0.05},
            "session_timeout_ms": 6000, "shutdown_grace": 2.0, "channels": channels,
            "route": route or {"group_wait": 0.2, "repeat_interval": 3600, "receivers": sorted(channels)},
        }
        section.update(alerting)
        return AlertingServiceSettings(topics=topics, alerting=section, metrics={"enabled": False})

    return make


class Replicas(list):
    """The running services; ``await replicas.stop(i)`` stops one (its partitions move)."""

    def __init__(self, services, stops, tasks):
        super().__init__(services)
        self.stops, self.tasks = stops, tasks

    async def stop(self, i: int) -> None:
        self.stops[i].set()
        await asyncio.wait_for(self.tasks[i], timeout=60)


@contextlib.asynccontextmanager
async def running(settings: AlertingServiceSettings, replicas: int = 1) -> AsyncIterator[Replicas]:
    """Run ``replicas`` alerting services (one consumer group) until the block ends."""
    services = [AlertingService(settings, instance=f"replica-{i}") for i in range(replicas)]
    stops = [asyncio.Event() for _ in services]
    tasks = [asyncio.create_task(s.run(stop)) for s, stop in zip(services, stops)]
    try:
        for s, t in zip(services, tasks):
            ready = asyncio.ensure_future(s.ready.wait())
            await asyncio.wait([ready, t], timeout=60, return_when=asyncio.FIRST_COMPLETED)
            if t.done():
                t.result()  # raise why it died
            assert s.ready.is_set(), "alerting service did not start within 60 s"
        yield Replicas(services, stops, tasks)
    finally:
        for stop in stops:
            stop.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=60)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]


def detection(site: str, source: str, modality: str = "vision", *, seq: int | None = None, score: float = 0.9,
              captured_at: datetime | None = None, label: str = "drone") -> Detection:
    now = datetime.now(timezone.utc)
    return Detection(site=site, source=source, modality=modality, label=label, score=score,
                     model=ModelRef(name=f"{modality}-drone", version="3"), input_event_id=str(uuid.uuid4()),
                     input_seq=seq, captured_at=captured_at or now, processed_at=now)


async def send_burst(producer, topic: str, site: str, source: str, modality: str = "vision", *, count: int = 8,
                     gap_s: float = 0.02, score: float = 0.9, age_s: float = 0.0, seq0: int = 0,
                     label: str = "drone") -> list[Detection]:
    """``count`` consecutive windows of one source, all above threshold; returns what was sent."""
    sent = []
    for i in range(count):
        d = detection(site, source, modality, seq=seq0 + i, score=score,
                      captured_at=datetime.now(timezone.utc) - timedelta(seconds=age_s), label=label)
        value, headers = encode_structured(d, source=f"test/{modality}")
        await producer.send_and_wait(topic, value, key=source.encode(), headers=headers)
        sent.append(d)
        if gap_s:
            await asyncio.sleep(gap_s)
    return sent


async def send_summary(producer, topic: str, site: str, source: str) -> None:
    now = datetime.now(timezone.utc)
    s = ScoreSummary(site=site, source=source, modality="vision", model=ModelRef(name="m", version="1"),
                     window_start=now - timedelta(seconds=1), window_end=now, windows=5, max_score=0.2,
                     mean_score=0.1)
    value, headers = encode_structured(s, source="test/summary")
    await producer.send_and_wait(topic, value, key=source.encode(), headers=headers)


async def read_topic(topic: str, *, at_least: int, timeout: float = 20.0, settle: float = 0.0) -> list:
    """Every record on ``topic`` (from the start), once at least ``at_least`` arrived; then
    ``settle`` seconds more to catch anything that should not be there."""
    from skysentry.config import Settings

    consumer = make_consumer(Settings().kafka, topic, group_id=None)
    await consumer.start()
    records = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        settle_until = None
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            records.extend(r for rs in batch.values() for r in rs)
            now = loop.time()
            if len(records) >= at_least and settle_until is None:
                settle_until = now + settle
            if settle_until is not None and now >= settle_until:
                return records
            if now > deadline:
                raise TimeoutError(f"{len(records)} of {at_least} record(s) on {topic} within {timeout:g} s")
    finally:
        await consumer.stop()


def alert_events(records) -> list:
    return [decode_structured(r.value)[1] for r in records]


@pytest.fixture
def kit():
    """The helpers above, for test modules (conftest is not importable under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(running=running, detection=detection, send_burst=send_burst, send_summary=send_summary,
                           read_topic=read_topic, alert_events=alert_events)
