"""The processors' faust consumer: a fetch that finds every partition paused (their queues
full) goes back to fetching when the first queue drains, not after faust's fixed second.

Measured in bench/pipeline.py with a 160-window queue: plain faust 0.60-0.64 of the raw
loop, this consumer 0.83-0.86 (at the default queue size both sit inside the noise)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from stream_processors.faust_app import PromptResumeConsumer

AUDIO = TP("sensor.audio", 0)


def consumer() -> PromptResumeConsumer:
    """The consumer's fetch-side state only (no broker, no app)."""
    c = PromptResumeConsumer.__new__(PromptResumeConsumer)
    c.app = SimpleNamespace(client_only=False, in_recovery=False)
    c.flow_active = True
    c._active_partitions, c._paused_partitions, c._buffered_partitions = {AUDIO}, set(), set()
    return c


def record_fetches(monkeypatch) -> list[set]:
    fetched: list[set] = []

    async def fetch(self, timeout):  # faust's own step: fetch from the active partitions
        fetched.append(set(self._get_active_partitions()))
        return {}, self._get_active_partitions()

    monkeypatch.setattr(faust_aiokafka.Consumer, "_wait_next_records", fetch)
    return fetched


async def test_all_paused_fetch_resumes_when_a_queue_drains(monkeypatch):
    fetched = record_fetches(monkeypatch)
    monkeypatch.setattr(PromptResumeConsumer, "IDLE_WAIT_S", 60.0)
    c = consumer()
    c.on_buffer_full(AUDIO)  # the audio queue is 80 % full: its partition is paused
    waiting = asyncio.create_task(c._wait_next_records(1.0))
    await asyncio.sleep(0.05)
    assert not waiting.done() and fetched == []  # nothing to fetch from: it waits
    c.on_buffer_drop(AUDIO)  # the queue drained below 40 %
    await asyncio.wait_for(waiting, 5)  # long before the 60 s idle bound
    assert fetched == [{AUDIO}]


async def test_all_paused_fetch_gives_up_after_the_idle_bound_without_fetching(monkeypatch):
    fetched = record_fetches(monkeypatch)
    monkeypatch.setattr(PromptResumeConsumer, "IDLE_WAIT_S", 0.05)
    c = consumer()
    c.on_buffer_full(AUDIO)
    assert await asyncio.wait_for(c._wait_next_records(1.0), 5) == ({}, set())
    assert fetched == []  # faust's own step would sleep another second here


async def test_an_active_partition_is_fetched_at_once(monkeypatch):
    fetched = record_fetches(monkeypatch)
    monkeypatch.setattr(PromptResumeConsumer, "IDLE_WAIT_S", 60.0)
    assert await asyncio.wait_for(consumer()._wait_next_records(1.0), 5) == ({}, {AUDIO})
    assert fetched == [{AUDIO}]
