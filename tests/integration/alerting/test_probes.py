"""/readyz and /livez of the alerting service on the real broker and Redis: ready once its
consumer started and the group gave it its partitions, not ready while it stops
(skysentry/metrics.py, the hook in alerting/service.py)."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request

from alerting.service import AlertingService
from skysentry.metrics import HEALTH, start_server


def probe(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def test_alerting_ready_after_consumer_started_and_assigned(make_settings):
    HEALTH.reset()
    server = start_server("127.0.0.1", 0, HEALTH)
    port = server.server_port
    service = AlertingService(make_settings({}))
    stop = asyncio.Event()
    beat = HEALTH.start_heartbeat(0.2)
    task = asyncio.create_task(service.run(stop))
    try:
        await asyncio.sleep(0)  # run() has declared its conditions; nothing is connected yet
        status, body = await asyncio.to_thread(probe, port, "/readyz")
        assert status == 503 and "fail consumer" in body and "fail partitions" in body, body
        deadline = time.monotonic() + 60
        while (got := await asyncio.to_thread(probe, port, "/readyz"))[0] != 200:
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, got
            await asyncio.sleep(0.05)
        body = got[1]
        assert "ok consumer" in body and "ok partitions: 3 assigned" in body, body
        assert service.ready.is_set() and service.assigned.is_set()
        assert (await asyncio.to_thread(probe, port, "/livez"))[0] == 200
        stop.set()
        deadline = time.monotonic() + 10
        while (await asyncio.to_thread(probe, port, "/readyz"))[0] != 503:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.wait_for(task, 30)
    finally:
        stop.set()
        if not task.done():
            await asyncio.wait_for(task, 30)
        beat.cancel()
        server.shutdown()
        HEALTH.reset()
