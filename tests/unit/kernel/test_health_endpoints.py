"""The metrics port's three endpoints (skysentry/metrics.py): /metrics exactly as
prometheus_client serves it, /livez failing while the event loop is blocked, /readyz only
once the loop runs and every declared condition is met. Real HTTP on loopback, no broker."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from skysentry.metrics import Health, start_server


def get(port: int, path: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


@pytest.fixture
def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    c = Counter("skysentry_test_things_total", "things", ["kind"], registry=reg)
    c.labels("a").inc(3)
    c.labels("b \"quoted\"").inc(0.5)
    Gauge("skysentry_test_level", "a level", registry=reg).set(-2.25)
    h = Histogram("skysentry_test_seconds", "a histogram", buckets=(0.1, 1.0), registry=reg)
    for v in (0.05, 0.5, 5.0):
        h.observe(v)
    return reg


def test_metrics_are_byte_identical_to_prometheus_client(registry):
    ours = start_server("127.0.0.1", 0, Health(), registry)
    theirs, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        for path, headers in [("/metrics", {}), ("/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}),
                              ("/metrics?name[]=skysentry_test_level", {}), ("/", {})]:
            a = get(ours.server_port, path, headers)
            b = get(theirs.server_port, path, headers)
            assert a[0] == b[0] == 200, path
            assert a[1] == b[1], (path, headers)
            assert a[2]["Content-Type"] == b[2]["Content-Type"]
        assert b"skysentry_test_things_total{kind=\"a\"} 3.0" in get(ours.server_port, "/metrics")[1]
    finally:
        ours.shutdown()
        theirs.shutdown()


def test_readyz_needs_the_loop_and_every_condition():
    health = Health()
    server = start_server("127.0.0.1", 0, health)
    port = server.server_port
    try:
        status, body, _ = get(port, "/readyz")
        assert status == 503 and b"fail event-loop: not started" in body  # nothing runs yet
        health.require("model", "partitions")

        async def main():
            beat = health.start_heartbeat(0.05)
            # declared but unmet: not ready, and the body names what is missing
            await asyncio.sleep(0.1)
            status, body, _ = await asyncio.to_thread(get, port, "/readyz")
            assert status == 503 and b"fail model" in body and b"fail partitions" in body
            health.set("model", True, "toy@1 warmed up")
            status, body, _ = await asyncio.to_thread(get, port, "/readyz")
            assert status == 503 and b"ok model: toy@1 warmed up" in body and b"fail partitions" in body
            health.set("partitions", True, "3 of frames")
            status, body, _ = await asyncio.to_thread(get, port, "/readyz")
            assert status == 200 and body.startswith(b"ok\n")
            health.set("partitions", False, "stopping")
            assert (await asyncio.to_thread(get, port, "/readyz"))[0] == 503
            beat.cancel()

        asyncio.run(main())
    finally:
        server.shutdown()


def test_livez_fails_while_the_event_loop_is_blocked():
    health = Health(stale_after_s=0.5)
    server = start_server("127.0.0.1", 0, health)
    port = server.server_port
    seen: dict[str, tuple[int, bytes]] = {}

    def probe_later(name: str, delay: float) -> threading.Thread:
        def run():
            time.sleep(delay)
            status, body, _ = get(port, "/livez")
            seen[name] = (status, body)
        t = threading.Thread(target=run)
        t.start()
        return t

    try:
        assert get(port, "/livez")[0] == 200  # not watched yet: a process starting is alive

        async def main():
            beat = health.start_heartbeat(0.05)
            await asyncio.sleep(0.2)
            assert (await asyncio.to_thread(get, port, "/livez"))[0] == 200
            t = probe_later("blocked", 1.0)
            time.sleep(1.5)  # a synchronous call blocks the loop: no heartbeat for 1.5 s
            t.join()
            await asyncio.sleep(0.2)  # the loop runs again and stamps
            seen["after"] = (await asyncio.to_thread(get, port, "/livez"))[:2]
            beat.cancel()

        asyncio.run(main())
        status, body = seen["blocked"]
        assert status == 503, body
        assert b"fail event-loop: last heartbeat" in body
        assert seen["after"][0] == 200, seen["after"]
        # and a loop that ended (the task gone, nothing stamps) is dead after stale_after_s
        time.sleep(0.7)
        assert get(port, "/livez")[0] == 503
    finally:
        server.shutdown()


def test_head_answers_without_a_body():
    health = Health()
    server = start_server("127.0.0.1", 0, health)
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{server.server_port}/livez", method="HEAD")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200 and r.read() == b""
    finally:
        server.shutdown()
