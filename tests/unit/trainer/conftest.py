"""Small class folders built on the fly (synthetic audio / images), shared by the trainer tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# The development data is not redistributable, so it is never in the repo: $SKYSENTRY_DATA
# (as for `make models`), else ../shared/data beside the checkout. Tests that need it skip
# where it is absent; the split logic itself is tested on synthetic folders too.
SHARED = Path(os.environ.get("SKYSENTRY_DATA") or Path(__file__).resolve().parents[4] / "shared" / "data")


def tone(seconds: float, amplitude: float, freq: float = 440.0, sr: int = 16_000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


@pytest.fixture
def audio_folder(tmp_path: Path) -> Path:
    """drone/: 2 loud files (one of 2 s = 2 windows), background/: 2 quiet files + 1 loud one."""
    root = tmp_path / "audio"
    for cls in ("drone", "background"):
        (root / cls).mkdir(parents=True)
    sf.write(root / "drone" / "a.wav", tone(1.0, 0.5), 16_000, subtype="PCM_16")
    sf.write(root / "drone" / "b.wav", tone(2.0, 0.5), 16_000, subtype="PCM_16")
    sf.write(root / "background" / "c.wav", tone(1.0, 0.001), 16_000, subtype="PCM_16")
    sf.write(root / "background" / "d.wav", tone(1.0, 0.001), 16_000, subtype="PCM_16")
    sf.write(root / "background" / "e.wav", tone(1.0, 0.5), 16_000, subtype="PCM_16")
    return root


def synthetic_audio_folder(root: Path, clips: int = 6) -> Path:
    """Class folders of 1 s windows cut from synthetic rotor audio (drone) and pure background."""
    from trainer.synthetic import synthetic_module

    syn = synthetic_module()
    for cls in ("drone", "background"):
        (root / cls).mkdir(parents=True, exist_ok=True)
    for k in range(clips):
        a = syn.synthetic_audio(3.0, seed=k, snr_db=10, drone_intervals=[(0.0, 3.0)])
        b = syn.synthetic_audio(3.0, seed=100 + k, drone_intervals=[])
        for j in range(3):
            sl = slice(j * 16_000, (j + 1) * 16_000)
            sf.write(root / "drone" / f"d{k}_{j}.wav", a.pcm[sl], 16_000, subtype="PCM_16")
            sf.write(root / "background" / f"b{k}_{j}.wav", b.pcm[sl], 16_000, subtype="PCM_16")
    return root
