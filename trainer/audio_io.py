"""Audio files → 1 s int16 windows at 16 kHz mono (numpy + soundfile; no torch).

Resampling is band-limited (FFT, the ideal low-pass), so 44.1 kHz recordings become 16 kHz
without aliasing; stereo is averaged to mono.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
WINDOW = 16_000  # 1 s


def resample(x: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling of a float signal by FFT truncation / zero-padding."""
    if sr_in == sr_out or x.size == 0:
        return x
    n_out = int(round(x.size * sr_out / sr_in))
    spec = np.fft.rfft(x)
    n_bins = n_out // 2 + 1
    if n_bins <= spec.size:
        spec = spec[:n_bins]
    else:
        spec = np.concatenate([spec, np.zeros(n_bins - spec.size, dtype=spec.dtype)])
    return np.fft.irfft(spec, n_out) * (n_out / x.size)


def read_audio(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A whole file as mono int16 at ``sample_rate``."""
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float64", always_2d=True)
    x = data.mean(axis=1)
    x = resample(x, sr, sample_rate)
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def windows(pcm: np.ndarray, window: int = WINDOW, hop: int | None = None) -> np.ndarray:
    """``int16 [n, window]``: consecutive windows (hop = window unless given). A clip shorter
    than two windows gives one window (zero-padded or its first ``window`` samples), so the
    ~1.02 s clips of the development set are one window each."""
    hop = hop or window
    if pcm.size < 2 * window:
        out = np.zeros(window, np.int16)
        out[: min(window, pcm.size)] = pcm[:window]
        return out[None]
    n = 1 + (pcm.size - window) // hop
    idx = np.arange(window)[None] + hop * np.arange(n)[:, None]
    return pcm[idx]
