"""Settings of a processor process: the kernel's :class:`~skysentry.config.Settings` plus one
section per processor (DESIGN §9: each config model lives beside its class).

Same precedence as every service: defaults < YAML (``SKYSENTRY_CONFIG``) < environment
(``SKYSENTRY_VISION_PROCESSOR__MAX_BATCH=16``,
``SKYSENTRY_AUDIO_PROCESSOR__DETECTOR__MODEL=models/audio.onnx``) < keyword arguments / CLI flags.
"""

from __future__ import annotations

from skysentry.config import Settings
from stream_processors.audio import AudioPipeline, AudioProcessorConfig
from stream_processors.core import Pipeline
from stream_processors.vision import VisionPipeline, VisionProcessorConfig
from detectors.registry import ModelSlot


class ProcessorSettings(Settings):
    vision_processor: VisionProcessorConfig = VisionProcessorConfig()
    audio_processor: AudioProcessorConfig = AudioProcessorConfig()

    def processor(self, modality: str) -> VisionProcessorConfig | AudioProcessorConfig:
        if modality == "vision":
            return self.vision_processor
        if modality == "audio":
            return self.audio_processor
        raise ValueError(f"unknown processor {modality!r}; use 'vision' or 'audio'")

    def input_topic(self, modality: str) -> str:
        return self.topics.frames if modality == "vision" else self.topics.audio


def make_pipeline(config: VisionProcessorConfig | AudioProcessorConfig, slot: ModelSlot) -> Pipeline:
    if config.type == "vision":
        return VisionPipeline(config, slot)
    return AudioPipeline(config, slot)
