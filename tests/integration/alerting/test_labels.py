"""Only drones raise alerts (the whole service on the real broker and Redis): a vision model
reports the class it saw, and a stream of ``bird`` detections that would confirm three times
over as ``drone`` is read, counted and committed without an alert or a dead letter."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

pytestmark = pytest.mark.integration


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def wait_for_count(outcome: str, target: float, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while sample("skysentry_alerting_detections_total", outcome=outcome) < target:
        assert loop.time() < deadline, f"the consumer did not count {outcome} detections within {timeout:g} s"
        await asyncio.sleep(0.05)


async def test_a_stream_of_birds_never_fires_and_the_same_stream_as_drone_does(make_settings, receiver, producer,
                                                                               kit, topics):
    settings = make_settings({"hook": {"type": "webhook", "url": receiver.url("/hook")}})
    before = {"skipped": sample("skysentry_alerting_detections_total", outcome="not_alerting_label"),
              "invalid": sample("skysentry_alerting_invalid_records_total")}
    async with kit.running(settings):
        for label in ("bird", "airplane", "helicopter"):
            await kit.send_burst(producer, topics.detections, "north", "cam-1", count=10, gap_s=0.01, label=label)
        await wait_for_count("not_alerting_label", before["skipped"] + 30)
        await asyncio.sleep(1.0)  # past the route's group_wait: nothing may be on its way
        assert receiver.requests() == []

        sent = await kit.send_burst(producer, topics.detections, "north", "cam-1", count=10, gap_s=0.01, seq0=10)
        firing = await receiver.await_for(1, "/hook", timeout=20)

    assert sample("skysentry_alerting_invalid_records_total") == before["invalid"]  # nothing dead-lettered
    doc = firing[0].json()
    assert doc["event"] == "firing" and doc["alert"]["label"] == "drone"
    assert set(doc["alert"]["detection_ids"]) <= {d.id for d in sent}  # no bird in the lineage
    events = kit.alert_events(await kit.read_topic(topics.alerts, at_least=1, settle=0.5))
    assert {e.label for e in events} == {"drone"} and events[0].event == "firing"
