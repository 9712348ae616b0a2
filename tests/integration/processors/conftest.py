"""Fixtures for the processor tests on the real broker: toy models, in-process and subprocess
processors. Every test uses its own topics and consumer groups (stream_processors.testing)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from detectors.testing import toy_audio_model, toy_vision_model
from stream_processors.runner import ProcessorService
from stream_processors.settings import ProcessorSettings
from stream_processors.testing import ProcessorProcess


@pytest.fixture(scope="session")
def toy_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("processor-models")
    return {
        "vision": toy_vision_model(d / "vision.onnx", name="toy-vision", version="1"),
        "audio": toy_audio_model(d / "audio.onnx", name="toy-audio", version="1"),
        "dir": d,
    }


@contextlib.asynccontextmanager
async def running(settings: ProcessorSettings, modality: str, timeout: float = 40.0):
    """A processor in this test's event loop, started (partitions assigned) and stopped cleanly."""
    service = ProcessorService(settings, modality)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    started = asyncio.create_task(service.started.wait())
    done, _ = await asyncio.wait({task, started}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        started.cancel()
        task.result()  # raises what stopped it
        raise RuntimeError("processor stopped before it started")
    if started not in done:
        started.cancel()
        stop.set()
        await asyncio.wait_for(task, 30)
        raise TimeoutError(f"processor did not join its group within {timeout}s")
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


@pytest.fixture
def run_processor():
    """``async with run_processor(settings, "vision") as service:`` — see :func:`running`."""
    return running


@pytest.fixture
def processes(tmp_path: Path):
    """Start processor subprocesses; whatever is still running at the end is killed."""
    started: list[ProcessorProcess] = []

    def start(settings: ProcessorSettings, modality: str = "vision") -> ProcessorProcess:
        p = ProcessorProcess(settings, modality, tmp_path, f"proc{len(started)}").start()
        started.append(p)
        return p

    yield start
    for p in started:
        if p.proc and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)
