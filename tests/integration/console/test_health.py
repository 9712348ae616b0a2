"""The health page's data from real sources: a service's own probes and metrics server
(skysentry/metrics.py, with the processor metrics of stream_processors/metrics.py: windows/s and
the model serving), a service that is not there, and a consumer group's lag on the real broker."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge

from skysentry.bus import make_consumer
from skysentry.config import Settings
from skysentry.metrics import Health, start_server

pytestmark = pytest.mark.integration


async def test_health_shows_services_models_rate_and_lag(make_settings, console_server, producer, topics, uid, kit):
    registry = CollectorRegistry()
    windows = Counter("skysentry_processor_windows_total", "windows by outcome", ["modality", "outcome"],
                      registry=registry)
    info = Gauge("skysentry_processor_model_info", "1 for the model now serving", ["modality", "name", "version"],
                 registry=registry)
    info.labels("vision", "vision-drone", "20261202.1").set(1)
    info.labels("vision", "vision-drone", "20261101.0").set(0)  # the one it replaced
    health = Health()
    health.require("model")  # not ready yet
    health.beat()
    server = start_server("127.0.0.1", 0, health, registry)
    dead = start_server("127.0.0.1", 0, Health(), CollectorRegistry())
    dead_url = f"http://127.0.0.1:{dead.server_port}"
    dead.shutdown()
    dead.server_close()  # nothing listens there now

    # a group that read 2 of the 7 records on one partition: lag 5
    group = f"lagging-{uid}"
    for i in range(7):
        await producer.send_and_wait(topics.detections, b"{}", key=b"k", partition=0)
    consumer = make_consumer(Settings().kafka, group_id=group)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topics.detections, 0)])
        await consumer.commit({TopicPartition(topics.detections, 0): 2})
    finally:
        await consumer.stop()

    try:
        settings = make_settings(console={"services": {"vision": f"http://127.0.0.1:{server.server_port}",
                                                       "audio": dead_url},
                                          "lag_groups": [group], "health_interval": 0.5})
        console = console_server(settings)
        async with httpx.AsyncClient(base_url=console.url, timeout=10) as http:
            page = await http.get("/health")
            assert all(f'id="{t}"' in page.text for t in ("services", "lag", "processors"))

            async def rated():
                windows.labels("vision", "inferred").inc(5)
                h = (await http.get("/api/health")).json()
                return h["rounds"] >= 3 and h["processors"] and h["processors"][0]["windows_per_s"] and h

            h = await kit.wait_until(rated, timeout=15, interval=0.1, what="a windows/s rate")
            services = {s["name"]: s for s in h["services"]}
            assert services["vision"]["up"] is True and services["vision"]["ready"] is False
            assert any("model" in line for line in services["vision"]["detail"])
            assert services["audio"]["up"] is False and "not reachable" in services["audio"]["detail"][0]
            assert [(p["service"], p["name"], p["version"]) for p in h["processors"]] == [
                ("vision", "vision-drone", "20261202.1")]
            assert h["processors"][0]["windows_per_s"] > 0
            assert h["lag"] == [{"group": group, "lag": 5, "topics": {topics.detections: 5}, "partitions": 1}]
            assert h["kafka_error"] is None

            health.set("model", True, "warmed up")
            await asyncio.sleep(1.2)
            h = (await http.get("/api/health")).json()
            assert {s["name"]: s["ready"] for s in h["services"]}["vision"] is True
    finally:
        server.shutdown()
        server.server_close()
