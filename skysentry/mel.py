"""Mel filters for audio front-ends: the audio model's log-mel (trainer/audio_model.py, baked
into the exported ONNX graph) and the alert evidence's spectrogram (alerting/capture.py) use
the same bands. NumPy only, so the serving path needs no torch."""

from __future__ import annotations

import numpy as np


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float, fmax: float) -> np.ndarray:
    """HTK-style triangular mel filters ``[n_mels, n_fft // 2 + 1]`` (Slaney area normalisation)."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)

    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fb = np.zeros((n_mels, freqs.size))
    for i in range(n_mels):
        lo, c, hi = hz[i], hz[i + 1], hz[i + 2]
        up = (freqs - lo) / max(c - lo, 1e-9)
        down = (hi - freqs) / max(hi - c, 1e-9)
        fb[i] = np.clip(np.minimum(up, down), 0, None) * (2.0 / (hi - lo))
    return fb.astype(np.float32)
