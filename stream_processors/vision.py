"""The vision processor: ``sensor.frames`` (JPEG, CloudEvents binary mode) → ``detections``.

Per micro-batch: validate the headers (:func:`skysentry.messages.decode_frame`), skip frames
older than ``max_frame_age_s`` (video must stay real time after a stall: they are counted and
committed, not inferred), decode + letterbox the JPEGs in a thread pool (libjpeg decodes at a
reduced size when the frame is much larger than the model's input), apply the optional motion
gate, run the model once for the whole batch, score each frame (over its camera's last frames
when the model's card asks for it: detectors/tracking.py), and turn every frame whose score reaches the
report threshold into a :class:`~skysentry.messages.Detection` with its lineage.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar, Literal

from pydantic import Field

from detectors.imaging import ImageDecodeError
from detectors.registry import ModelSlot
from detectors.vision import VisionDetector, VisionDetectorConfig, VisionResult
from skysentry.messages import ContractError, FrameEvent, decode_frame, utcnow
from stream_processors.core import BatchResult, InputRecord, Pipeline, Prepared, ProcessorConfig
from stream_processors.gates import MotionGate, MotionGateSettings, thumbnail


class VisionProcessorConfig(ProcessorConfig):
    type: Literal["vision"] = "vision"
    group_id: str = "skysentry-vision"
    detector: VisionDetectorConfig = VisionDetectorConfig()
    max_frame_age_s: float | None = Field(5.0, gt=0, description="skip (count, commit) frames older than this")
    decode_threads: int = Field(2, ge=1, description="threads decoding JPEGs off the event loop")
    motion_gate: MotionGateSettings = MotionGateSettings()


class VisionPipeline(Pipeline):
    MODALITY: ClassVar[str] = "vision"
    config: VisionProcessorConfig

    def __init__(self, config: VisionProcessorConfig, slot: ModelSlot) -> None:
        super().__init__(config, slot)
        self.gate = MotionGate(config.motion_gate) if config.motion_gate.enabled else None
        self._pool = ThreadPoolExecutor(config.decode_threads, thread_name_prefix="jpeg")

    @property
    def max_age_s(self) -> float | None:
        return self.config.max_frame_age_s

    def _prepare(self, detector: VisionDetector, record: InputRecord, event: FrameEvent):
        frame = detector.prepare_jpeg(record.value, event.width, event.height)
        thumb = thumbnail(frame.tensor) if self.gate else None
        return frame, thumb

    async def prepare(self, records: list[InputRecord]) -> Prepared:
        detector: VisionDetector = self.slot.current  # one model for the whole batch
        result = BatchResult(model=detector.ref)
        now = utcnow()
        fresh: list[tuple[InputRecord, FrameEvent]] = []
        for record in records:
            try:
                event = decode_frame(record.value, record.headers)
            except ContractError as exc:
                result.dead.append((record, f"invalid frame: {exc}"))
                continue
            if self.is_stale(event.time, now):
                result.outcomes["stale"] += 1
                self.summaries.skipped(event.site, event.source, detector.ref)
                continue
            fresh.append((record, event))

        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        decoded = await asyncio.gather(
            *(loop.run_in_executor(self._pool, self._prepare, detector, r, e) for r, e in fresh),
            return_exceptions=True)
        result.decode_s = time.perf_counter() - t0
        prepared = Prepared(result, detector, started_at=now)
        for (record, event), item in zip(fresh, decoded):
            if isinstance(item, ImageDecodeError):
                result.dead.append((record, f"undecodable JPEG: {item}"))
                continue
            if isinstance(item, BaseException):
                result.dead.append((record, f"frame pre-processing failed: {type(item).__name__}: {item}"[:500]))
                continue
            frame, thumb = item
            if self.gate is not None and not self.gate.check(event.source, thumb, event.time):
                result.outcomes["gated"] += 1
                result.gated_by[self.gate.name] += 1
                self.summaries.skipped(event.site, event.source, detector.ref)
                continue
            prepared.items.append((record, event, frame))
        return prepared

    def run_model(self, detector: VisionDetector, inputs: list) -> list:
        return detector.infer(inputs)

    def scored(self, detector: VisionDetector, event: FrameEvent, output: VisionResult
               ) -> tuple[float, list, tuple[str, float] | None]:
        return detector.frame_score(event.source, event.time.timestamp(), output), output.boxes, output.other()

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        await super().close()
