"""/readyz of a processor on the real broker: not ready while its model is loading, not ready
with the model warm but no group assignment yet, ready once both hold, not ready again while
it stops (skysentry/metrics.py, hooks in stream_processors/runner.py).

The two start-up steps are held open by wrapping the service's own methods with a gate (the
model load runs in a thread; the faust app, whose consumer joins the group, is built after
it), so each state is observed for certain rather than by racing a fast start."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request

import pytest

from skysentry.metrics import HEALTH, start_server
from stream_processors.runner import ProcessorService
from stream_processors.testing import isolated_settings


def probe(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def until(port: int, path: str, status: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        got, body = await asyncio.to_thread(probe, port, path)
        if got == status:
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} still {got} after {timeout}s:\n{body}")
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("modality", ["vision", "audio"])
async def test_ready_only_with_model_warm_and_partitions_assigned(stack, toy_models, modality):
    settings = isolated_settings(stack.bootstrap_servers, vision_model=toy_models["vision"],
                                 audio_model=toy_models["audio"], partitions=2)
    HEALTH.reset()
    server = start_server("127.0.0.1", 0, HEALTH)
    port = server.server_port
    service = ProcessorService(settings, modality)
    model_gate, app_gate = threading.Event(), asyncio.Event()
    load, build = service._load_initial, service._build_app

    def gated_load(*args):
        assert model_gate.wait(60), "model gate never opened"
        return load(*args)

    def gated_build():
        built = build()
        real_start = built.start

        async def gated_start():
            await app_gate.wait()
            return await real_start()

        built.start = gated_start
        return built

    service._load_initial, service._build_app = gated_load, gated_build
    stop = asyncio.Event()
    beat = HEALTH.start_heartbeat(0.2)
    task = asyncio.create_task(service.run(stop))
    try:
        # 1. the model is loading (held): not ready, and the body says what is missing
        body = await until(port, "/readyz", 503, 10)
        await asyncio.sleep(1.0)
        status, body = await asyncio.to_thread(probe, port, "/readyz")
        assert status == 503 and service.slot is None
        assert "fail model" in body and "fail partitions" in body, body
        assert (await asyncio.to_thread(probe, port, "/livez"))[0] == 200  # alive all the same

        # 2. model warm, the consumer not started (held): still not ready
        model_gate.set()
        deadline = time.monotonic() + 30
        while "ok model" not in (body := (await asyncio.to_thread(probe, port, "/readyz"))[1]):
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        status, body = await asyncio.to_thread(probe, port, "/readyz")
        assert status == 503 and "fail partitions" in body and not service.assigned, body
        assert service.slot is not None

        # 3. the consumer joins its group on the real broker: ready once the assignment came
        app_gate.set()
        body = await until(port, "/readyz", 200, 60)
        assert service.started.is_set() and service.assigned, body
        assert f"ok partitions: {len(service.assigned)} of {settings.input_topic(modality)}" in body
        assert (await asyncio.to_thread(probe, port, "/livez"))[0] == 200

        # 4. stopping: not ready any more
        stop.set()
        await until(port, "/readyz", 503, 10)
        await asyncio.wait_for(task, 60)
    finally:
        model_gate.set()
        app_gate.set()
        stop.set()
        if not task.done():
            await asyncio.wait_for(task, 60)
        beat.cancel()
        server.shutdown()
        HEALTH.reset()
