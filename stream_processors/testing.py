"""Helpers for tests, drills and benches of the processors: isolated topics, synthetic inputs,
collecting outputs. Not used on the serving path.

Every caller gets its own topic names and consumer group (:func:`isolated_settings`), so any
number of test sessions and benches can share one broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import yaml

from skysentry.bus import make_consumer, make_producer
from skysentry.config import KafkaSettings, TopicSettings
from skysentry.messages import (AudioEvent, ContractError, Detection, FrameEvent, ModelAnnouncement, ScoreSummary,
                                decode_structured, encode_audio, encode_frame, encode_structured, header, utcnow)
from skysentry.service import ServiceProcess
from skysentry.topics import dlq, ensure_topics
from stream_processors.settings import ProcessorSettings


def unique_topics(prefix: str = "t", partitions: int = 3) -> TopicSettings:
    sfx = f"{prefix}-{uuid.uuid4().hex[:10]}"
    return TopicSettings(frames=f"sensor.frames.{sfx}", audio=f"sensor.audio.{sfx}", detections=f"detections.{sfx}",
                         alerts=f"alerts.{sfx}", models=f"models.{sfx}", partitions=partitions)


def isolated_settings(bootstrap: str, *, vision_model: Path | None = None, audio_model: Path | None = None,
                      partitions: int = 3, prefix: str = "t", **sections) -> ProcessorSettings:
    """Settings with unique topics and groups; short commit interval and session timeout."""
    topics = unique_topics(prefix, partitions)
    group = f"proc-{topics.frames.rsplit('.', 1)[-1]}"
    common = {"commit_interval_s": 0.3, "session_timeout_s": 6.0, "summary_interval_s": 0.5}
    vision = {"group_id": f"{group}-vision", **common, **sections.pop("vision_processor", {})}
    audio = {"group_id": f"{group}-audio", **common, **sections.pop("audio_processor", {})}
    if vision_model:
        vision.setdefault("detector", {})["model"] = vision_model
    if audio_model:
        audio.setdefault("detector", {})["model"] = audio_model
    return ProcessorSettings(kafka={"bootstrap_servers": bootstrap}, topics=topics, metrics={"enabled": False},
                             vision_processor=vision, audio_processor=audio, **sections)


def jpeg(width: int = 160, height: int = 120, brightness: int = 255, quality: int = 80) -> bytes:
    img = np.full((height, width, 3), brightness, dtype=np.uint8)
    img[::7, ::5] = np.uint8(max(0, brightness - 40))  # a little texture
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def frame_record(source: str = "cam-1", seq: int = 0, *, data: bytes | None = None, width: int = 160,
                 height: int = 120, time: datetime | None = None, site: str = "site-1", event_id: str | None = None):
    """(key, value, headers, event) of one frame record."""
    data = data if data is not None else jpeg(width, height)
    kwargs = {"id": event_id} if event_id else {}
    event = FrameEvent(source=source, site=site, time=time or utcnow(), seq=seq, width=width, height=height, **kwargs)
    key, value, headers = encode_frame(event, data)
    return key, value, headers, event


def tone(samples: int = 16_000, amplitude: float = 0.3, freq: float = 440.0, rate: int = 16_000) -> np.ndarray:
    t = np.arange(samples) / rate
    return (np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype(np.int16)


def audio_record(source: str = "mic-1", seq: int = 0, *, pcm: np.ndarray | None = None, rate: int = 16_000,
                 time: datetime | None = None, site: str = "site-1"):
    pcm = tone() if pcm is None else pcm
    event = AudioEvent(source=source, site=site, time=time or utcnow(), seq=seq, samplerate=rate, samples=len(pcm))
    key, value, headers = encode_audio(event, pcm)
    return key, value, headers, event


async def create_topics(settings: ProcessorSettings) -> None:
    await ensure_topics(settings.kafka, settings.topics)


async def publish(kafka: KafkaSettings, topic: str, records: Iterable[tuple[bytes | None, bytes | None, list]],
                  *, rate_hz: float | None = None) -> int:
    """Send (key, value, headers) records and wait for all acknowledgements; optional pacing."""
    producer = make_producer(kafka)
    await producer.start()
    n = 0
    try:
        futures = []
        t0 = time.perf_counter()
        for key, value, headers in records:
            futures.append(await producer.send(topic, value=value, key=key, headers=headers))
            n += 1
            if rate_hz:
                delay = t0 + n / rate_hz - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return n


async def announce(kafka: KafkaSettings, topic: str, ann: ModelAnnouncement) -> None:
    value, headers = encode_structured(ann, source="skysentry/tests")
    await publish(kafka, topic, [(ann.name.encode(), value, headers)])


@dataclass
class Collected:
    detections: list[Detection] = field(default_factory=list)
    summaries: list[ScoreSummary] = field(default_factory=list)
    received_at: dict[str, datetime] = field(default_factory=dict)  # detection id → when we read it
    dead: list = field(default_factory=list)
    invalid: int = 0

    def input_ids(self) -> list[str]:
        return [d.input_event_id for d in self.detections]


class BackgroundReader:
    """Reads topics from their start in the background (``async with``), handing each batch's
    records of one partition to :meth:`read` with when they were read."""

    def __init__(self, kafka: KafkaSettings, *topics: str) -> None:
        self.kafka = kafka
        self.names = list(topics)
        self._task: asyncio.Task | None = None
        self._consumer = None

    def read(self, topic: str, records: list, read_at: datetime) -> None:
        raise NotImplementedError

    async def __aenter__(self):
        self._consumer = make_consumer(self.kafka, *self.names, group_id=None, auto_offset_reset="earliest",
                                       metadata_max_age_ms=1000)
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            now = utcnow()
            for tp, records in batches.items():
                self.read(tp.topic, records, now)


class OutputCollector(BackgroundReader):
    """Reads the detections topic (and optionally a DLQ) in the background from the beginning."""

    def __init__(self, kafka: KafkaSettings, topics: TopicSettings, *, dlq_of: str | None = None) -> None:
        super().__init__(kafka, topics.detections, *([dlq(dlq_of)] if dlq_of else []))
        self.dlq_topic = dlq(dlq_of) if dlq_of else None
        self.out = Collected()

    def read(self, topic: str, records: list, read_at: datetime) -> None:
        for r in records:
            if topic == self.dlq_topic:
                self.out.dead.append(r)
                continue
            try:
                _, msg = decode_structured(r.value, (Detection, ScoreSummary))
            except ContractError:
                self.out.invalid += 1
                continue
            if isinstance(msg, Detection):
                self.out.detections.append(msg)
                self.out.received_at.setdefault(msg.id, read_at)
            else:
                self.out.summaries.append(msg)

    async def wait_for(self, predicate, timeout: float = 30.0, what: str = "outputs") -> Collected:
        deadline = time.monotonic() + timeout
        while not predicate(self.out):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}: "
                                   f"{len(self.out.detections)} detections, {len(self.out.dead)} dead letters, "
                                   f"{len(self.out.summaries)} summaries")
            await asyncio.sleep(0.05)
        return self.out


class DetectionReader(BackgroundReader):
    """Hands each detection's CloudEvent (a dict) on a detections topic to :meth:`seen`, with when
    it was read: what the benches count and time. Only ``json.loads`` (no model validation): a
    bench measures the processor, not this."""

    def seen(self, event: dict, read_at: datetime) -> None:
        raise NotImplementedError

    def read(self, topic: str, records: list, read_at: datetime) -> None:
        for r in records:
            event = json.loads(r.value)
            if event.get("type") == "skysentry.detection.v1":
                self.seen(event, read_at)


def dlq_reason(record) -> str | None:
    return header(record.headers, "error")


def old(seconds: float) -> datetime:
    return utcnow() - timedelta(seconds=seconds)


class ProcessorProcess(ServiceProcess):
    """``python -m stream_processors <modality> --config <yaml>`` in a subprocess, from a
    config written for it; tests and benches wait on its logged partition assignments.
    ``deployed``: run it as deployments do, ``skysentry process <modality>``, from the
    repository root."""

    def __init__(self, settings: ProcessorSettings, modality: str, workdir: Path, name: str, *,
                 deployed: bool = False) -> None:
        config = workdir / f"{name}.yaml"
        doc = settings.model_dump(mode="json", include={"kafka", "topics", f"{modality}_processor"})
        doc["kafka"].pop("sasl_password", None)
        doc["metrics"] = {"enabled": False}
        doc["log"] = {"level": "INFO", "json": True}
        config.write_text(yaml.safe_dump(doc))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSENTRY_")}
        if deployed:
            super().__init__(name, ["skysentry.cli", "process", modality], config, env=env,
                             cwd=Path(__file__).resolve().parents[1])
        else:
            super().__init__(name, ["stream_processors", modality], config, env=env, cwd=Path.cwd())
