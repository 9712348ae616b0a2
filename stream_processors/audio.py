"""The audio processor: ``sensor.audio`` (PCM s16le, CloudEvents binary mode) → ``detections``.

Per micro-batch: validate headers and payload length (:func:`skysentry.messages.decode_audio`),
optionally skip windows older than ``max_window_age_s`` (off by default: DESIGN §4 keeps audio
while the broker is away), apply the optional RMS level gate, fit each window to the model
(resample / pad, see :meth:`detectors.audio.AudioDetector.fit`) and stack the batch, all on the
event loop; the inference thread then only runs the graph.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from detectors.audio import AudioDetector, AudioDetectorConfig, rms_dbfs
from detectors.registry import ModelSlot
from skysentry.messages import ContractError, decode_audio, utcnow
from stream_processors.core import BatchResult, InputRecord, Pipeline, Prepared, ProcessorConfig
from stream_processors.gates import LevelGate, LevelGateSettings


class AudioProcessorConfig(ProcessorConfig):
    type: Literal["audio"] = "audio"
    group_id: str = "skysentry-audio"
    detector: AudioDetectorConfig = AudioDetectorConfig()
    max_batch: int = Field(16, ge=1, le=1024)
    max_window_age_s: float | None = Field(None, gt=0, description="skip windows older than this; None keeps all")
    level_gate: LevelGateSettings = LevelGateSettings()


class AudioPipeline(Pipeline):
    MODALITY: ClassVar[str] = "audio"
    config: AudioProcessorConfig

    def __init__(self, config: AudioProcessorConfig, slot: ModelSlot) -> None:
        super().__init__(config, slot)
        self.gate = LevelGate(config.level_gate) if config.level_gate.enabled else None

    @property
    def max_age_s(self) -> float | None:
        return self.config.max_window_age_s

    async def prepare(self, records: list[InputRecord]) -> Prepared:
        detector: AudioDetector = self.slot.current
        result = BatchResult(model=detector.ref)
        prepared = Prepared(result, detector)
        now = utcnow()
        for record in records:
            try:
                event, pcm = decode_audio(record.value, record.headers)
            except ContractError as exc:
                result.dead.append((record, f"invalid audio window: {exc}"))
                continue
            if self.is_stale(event.time, now):
                result.outcomes["stale"] += 1
                self.summaries.skipped(event.site, event.source, detector.ref)
                continue
            if self.gate is not None and not self.gate.check(event.source, rms_dbfs(pcm), event.time):
                result.outcomes["gated"] += 1
                result.gated_by[self.gate.name] += 1
                self.summaries.skipped(event.site, event.source, detector.ref)
                continue
            prepared.items.append((record, event, detector.fit(pcm, event.samplerate)))
        return prepared

    def assemble(self, detector: AudioDetector, inputs: list[np.ndarray]) -> tuple[np.ndarray, int]:
        return detector.batch(inputs)

    def run_model(self, detector: AudioDetector, batch: tuple[np.ndarray, int]) -> np.ndarray:
        return detector.run_batch(*batch)
