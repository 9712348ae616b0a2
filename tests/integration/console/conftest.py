"""Fixtures for the console's integration tests: the session's real Kafka and Redis (``stack``),
unique topics and Redis prefixes per test, the real console app under uvicorn on a free loopback
port (in its own thread and event loop, as a browser would reach it), the real alerting service,
and a loopback receiver standing in for a webhook."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import uvicorn
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from alerting.service import AlertingService
from alerting.testing import RecordingReceiver
from console.app import Console
from console.auth import Credentials
from console.config import ConsoleServiceSettings
from skysentry.bus import client_options
from skysentry.config import Settings, TopicSettings
from skysentry.messages import Detection, ModelRef, encode_structured

SECRET = "console-evidence-secret-7d1e"


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def topics(stack, uid) -> TopicSettings:
    t = TopicSettings(frames=f"c-{uid}.frames", audio=f"c-{uid}.audio", detections=f"c-{uid}.detections",
                      alerts=f"c-{uid}.alerts", partitions=3)
    admin = AIOKafkaAdminClient(**client_options(Settings().kafka))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=3, replication_factor=1)
                                   for n in (t.frames, t.audio, t.detections, t.alerts)])
    finally:
        await admin.close()
    return t


@pytest.fixture
def receiver() -> RecordingReceiver:
    with RecordingReceiver() as rx:
        yield rx


@pytest.fixture
def make_settings(stack, uid, topics, tmp_path):
    """Console + alerting settings for one test: short timings, unique names, an evidence store
    in tmp_path; ``channels``, ``console`` fields and ``alerting`` fields can be given."""

    def make(channels: dict | None = None, *, console: dict | None = None, evidence: dict | None = None,
             **alerting) -> ConsoleServiceSettings:
        channels = channels or {}
        section = {
            "key_prefix": f"ctest:{uid}", "group_id": f"alerting-{uid}", "resolve_after": 2.0,
            "corroboration": 1.0, "confirm": {"k": 3, "n": 5, "threshold": 0.6, "horizon": 10},
            "tick_poll": 0.05, "mute_recheck": 0.3, "outbox": {"lease": 8, "poll": 0.05},
            "session_timeout_ms": 6000, "shutdown_grace": 2.0, "channels": channels,
            "route": {"group_wait": 0.2, "repeat_interval": 3600, "receivers": sorted(channels)},
        }
        section.update(alerting)
        return ConsoleServiceSettings(
            topics=topics, alerting=section, metrics={"enabled": False},
            evidence={"url": str(tmp_path / "evidence"), "secret": SECRET, "capture_timeout": 10,
                      **(evidence or {})},
            console={"port": 0, "alerts_poll": 0.2, "health_interval": 1.0, "history": 600,
                     "client_id": f"console-{uid}", **(console or {})})

    return make


class ConsoleServer:
    """The console app under uvicorn in its own thread and event loop, on a free loopback port."""

    def __init__(self, settings: ConsoleServiceSettings, credentials: Credentials | None = None):
        self.console = Console(settings, credentials=credentials)
        self.server = uvicorn.Server(uvicorn.Config(self.console.app(), host="127.0.0.1", port=0, log_config=None,
                                                    access_log=False, timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="console")
        self.url = ""

    def start(self) -> "ConsoleServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "console did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def wait_reading(self, timeout: float = 20.0) -> None:
        """Until the live reader has its partitions (what is published from now on is seen)."""
        deadline = time.monotonic() + timeout
        while self.console.reader.partitions < 6:  # frames + detections, 3 each
            assert time.monotonic() < deadline, "the console's reader got no partitions"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # seek_to_end resolved on the broker

    def stop(self) -> None:
        if self.console.loop is not None:
            self.console.loop.call_soon_threadsafe(self.console.hub.close)
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive(), "console did not stop"


@pytest.fixture
def console_server():
    started: list[ConsoleServer] = []

    def start(settings: ConsoleServiceSettings, credentials: Credentials | None = None) -> ConsoleServer:
        server = ConsoleServer(settings, credentials).start()
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()


def csrf_of(html: str) -> str:
    m = re.search(r'<meta name="csrf-token" content="([^"]*)">', html)
    assert m, html[:500]
    return m.group(1)


async def open_session(http: httpx.AsyncClient, path: str = "/alerts") -> str:
    """Load a page (which sets the session cookie in open mode) and return its CSRF token."""
    page = await http.get(path)
    assert page.status_code == 200, page.text[:300]
    return csrf_of(page.text)


@contextlib.asynccontextmanager
async def alerting(settings) -> AsyncIterator[AlertingService]:
    """The real alerting service with these settings, until the block ends."""
    service = AlertingService(settings, instance="console-test")
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    ready = asyncio.ensure_future(service.ready.wait())
    await asyncio.wait([ready, task], timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    assert service.ready.is_set(), "alerting did not start"
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def detection(site: str, source: str, *, seq: int, input_event_id: str | None = None, score: float = 0.9,
              captured_at: datetime | None = None, modality: str = "vision", boxes=()) -> Detection:
    now = datetime.now(timezone.utc)
    return Detection(site=site, source=source, modality=modality, label="drone", score=score, boxes=list(boxes),
                     model=ModelRef(name=f"{modality}-drone", version="3"),
                     input_event_id=input_event_id or str(uuid.uuid4()), input_seq=seq,
                     captured_at=captured_at or now, processed_at=now)


async def send(producer, topic: str, message, key: str) -> None:
    value, headers = encode_structured(message, source="test/processor")
    await producer.send_and_wait(topic, value, key=key.encode(), headers=headers)


async def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout:g} s")
        await asyncio.sleep(interval)


@pytest.fixture
def kit():
    """The helpers above, for test modules (conftest is not importable under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(alerting=alerting, detection=detection, send=send, wait_until=wait_until,
                           open_session=open_session, csrf_of=csrf_of, secret=SECRET,
                           ago=lambda s: datetime.now(timezone.utc) - timedelta(seconds=s))
