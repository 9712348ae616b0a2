"""``skysentry console`` as deployed (a child process, its config file, the real broker and Redis):
it serves its pages and stream, and a SIGTERM while a browser's event stream is open stops it
within seconds with status 0 and nothing logged at error level; the token never reaches its log."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import yaml

from skysentry.service import ServiceProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "process-test-token-9c3e51d7"


async def test_the_console_process_serves_and_stops_cleanly_with_a_stream_open(stack, topics, uid, tmp_path):
    from deploy.local.pipeline import free_port

    port = free_port("127.0.0.1")
    config = tmp_path / "console.yaml"
    config.write_text(yaml.safe_dump({
        "topics": topics.model_dump(), "alerting": {"key_prefix": f"ptest:{uid}"},
        "evidence": {"url": str(tmp_path / "evidence")}, "log": {"json": True},
        "metrics": {"enabled": False}, "console": {"port": port, "health_interval": 0.5}}))
    env = {"KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap_servers, "REDIS_URL": stack.redis_url,
           "SKYSENTRY_CONSOLE__TOKEN": TOKEN, "PATH": "/usr/bin:/bin"}
    proc = ServiceProcess("console", ["console"], config, env=env, cwd=ROOT).start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.proc.poll() is None, proc.tail(30)
                assert time.monotonic() < deadline, proc.tail(30)
                await asyncio.sleep(0.1)
            assert (await http.get("/api/alerts")).status_code == 200
            got: list[str] = []

            async def listen() -> None:
                async with http.stream("GET", "/events?kinds=health") as r:
                    async for line in r.aiter_lines():
                        got.append(line)

            stream = asyncio.create_task(listen())
            deadline = time.monotonic() + 10
            while not any(line.startswith("event: health") for line in got):
                assert time.monotonic() < deadline, got
                await asyncio.sleep(0.05)
            t0 = time.monotonic()
            status = await asyncio.to_thread(proc.stop, 20)
            took = time.monotonic() - t0
            await asyncio.wait_for(stream, 5)  # the server ended the stream
    finally:
        proc.stop()
    assert status == 0 and took < 8, (status, took, proc.tail(30))
    assert [r for r in proc.lines if str(r.get("level")).lower() in ("error", "critical")] == []
    assert TOKEN not in "".join(proc.raw)
    assert any(r.get("msg") == "console started" for r in proc.lines), proc.tail(30)
