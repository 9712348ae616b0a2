"""The audio detector: raw 16 kHz PCM windows in, a drone score out.

Graph contract (the trainer exports exactly this):

* input ``pcm``: ``int16 [batch, samples]``, mono, at ``card.input.sample_rate`` (16 000);
  one window is 1 s = 16 000 samples (``card.input.shape == ["batch", 16000]``). A card may
  declare ``float32`` instead, then samples are scaled to [-1, 1) before the graph.
* output ``score``: ``float32 [batch]``, sigmoid applied.
* The log-mel front-end (STFT as a fixed convolution, mel filterbank, log) is *inside* the
  graph, so trainer and server cannot compute different features.

Windows that are not exactly the model's length are fitted (:meth:`AudioDetector.fit`): a
different sample rate is resampled (linear interpolation — adequate for a detector, and
counted by the processor), a short window is zero-padded, a long one keeps its last samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from detectors.base import SHIPPED_MODELS, Detector, DetectorConfig, ModelRefused, open_session, verify_model
from detectors.card import ModelCard
from detectors.session import pad_batch

DEFAULT_SAMPLE_RATE = 16_000


class AudioDetectorConfig(DetectorConfig):
    type: Literal["audio"] = "audio"
    model: Path = SHIPPED_MODELS / "audio.onnx"


def rms_dbfs(pcm: np.ndarray) -> float:
    """Level of an int16 window in dB relative to full scale (silence → -120)."""
    if pcm.size == 0:
        return -120.0
    x = pcm.astype(np.float32) / 32768.0
    rms = float(np.sqrt(np.mean(x * x)))
    return max(-120.0, 20.0 * np.log10(rms + 1e-12))


class AudioDetector(Detector):
    TASK = "audio"

    def __init__(self, path: Path, card: ModelCard, session, config: AudioDetectorConfig | None = None):
        config = config or AudioDetectorConfig(model=path)
        super().__init__(path, card, session, config.report_threshold)
        self.config = config
        if card.input.dtype not in ("int16", "float32"):
            raise ModelRefused(f"{path}: audio input must be int16 or float32 PCM, card says {card.input.dtype}")
        self.sample_rate = card.input.sample_rate or DEFAULT_SAMPLE_RATE
        self.window_samples = self._window_samples()
        self.dtype = np.int16 if card.input.dtype == "int16" else np.float32

    @classmethod
    def load(cls, config: AudioDetectorConfig, *, expect_sha256: str | None = None) -> "AudioDetector":
        card = verify_model(config.model, expect_sha256=expect_sha256, expect_task=cls.TASK)
        return cls(config.model, card, open_session(config.model, config.session), config)

    def _window_samples(self) -> int:
        shape = list(self.card.input.shape)
        if len(shape) != 2:
            raise ModelRefused(f"{self.path}: audio input shape must be [batch, samples], card says {shape}")
        n = shape[1]
        if not isinstance(n, int):
            graph = self.session.input_shape(self.input_name)
            n = graph[1] if len(graph) == 2 and isinstance(graph[1], int) else self.sample_rate
        return int(n)

    def fit(self, pcm: np.ndarray, sample_rate: int) -> np.ndarray:
        """One window of any rate and length → ``int16 [window_samples]`` at the model's rate."""
        x = np.asarray(pcm, dtype=np.int16).reshape(-1)
        if sample_rate != self.sample_rate and x.size:
            n_out = max(1, round(x.size * self.sample_rate / sample_rate))
            t_in = np.arange(x.size, dtype=np.float64) / sample_rate
            t_out = np.arange(n_out, dtype=np.float64) / self.sample_rate
            x = np.round(np.interp(t_out, t_in, x.astype(np.float64))).astype(np.int16)
        n = self.window_samples
        if x.size > n:
            return np.ascontiguousarray(x[-n:])
        if x.size < n:
            return np.concatenate([np.zeros(n - x.size, dtype=np.int16), x])
        return x

    def example_batch(self, batch: int) -> np.ndarray:
        rng = np.random.default_rng(0)
        return self._as_input(rng.integers(-3000, 3000, (batch, self.window_samples), dtype=np.int16))

    def _as_input(self, pcm: np.ndarray) -> np.ndarray:
        if self.dtype == np.float32:
            return pcm.astype(np.float32) / 32768.0
        return pcm

    def batch(self, windows: list[np.ndarray]) -> tuple[np.ndarray, int]:
        """Windows already :meth:`fit` to the model (``int16 [window_samples]`` each) → the
        graph's input (padded to the session's batch bucket) and how many rows are real."""
        n = len(windows)
        batch = pad_batch(np.stack(windows), self.session.padded_size(n))
        return self._as_input(batch), n

    def run_batch(self, batch: np.ndarray, n: int) -> np.ndarray:
        """Scores of the first ``n`` rows of a :meth:`batch`."""
        out = self.session.run({self.input_name: batch}, ["score"])
        return self._scores(out, n)

    def infer(self, windows: list[np.ndarray]) -> np.ndarray:
        """Scores for windows already :meth:`fit` to the model (``int16 [window_samples]`` each)."""
        if not windows:
            return np.zeros(0, dtype=np.float32)
        return self.run_batch(*self.batch(windows))
