"""Cheap gates in front of inference: skip windows in which nothing can have changed.

A static camera looking at an empty sky sends the same frame again and again; a microphone
in a quiet field sends near-silence. Gates keep those from the model (counted as ``gated``,
committed like any other outcome) — and still let one window per source through every
``refresh_s`` of capture time, so a drone that hovers motionless, or a gate threshold set too
high, can never hide a source for long.
"""

from __future__ import annotations

from datetime import datetime

import cv2
import numpy as np
from pydantic import BaseModel, Field

THUMB = 32  # motion is judged on a THUMB x THUMB grey thumbnail


class MotionGateSettings(BaseModel):
    enabled: bool = False
    threshold: float = Field(1.5, ge=0, description="mean absolute grey-level change (0–255) that counts as motion")
    refresh_s: float = Field(5.0, gt=0, description="infer at least this often per camera, motion or not")


class LevelGateSettings(BaseModel):
    enabled: bool = False
    min_dbfs: float = Field(-55.0, le=0, description="windows quieter than this (RMS, dBFS) are gated")
    refresh_s: float = Field(5.0, gt=0, description="infer at least this often per microphone, loud or not")


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """A small grey image for the motion gate (computed in the decode thread)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.int16)


class _Refresh:
    def __init__(self, refresh_s: float) -> None:
        self.refresh_s = refresh_s
        self.last_pass: dict[str, datetime] = {}

    def due(self, source: str, t: datetime) -> bool:
        last = self.last_pass.get(source)
        return last is None or (t - last).total_seconds() >= self.refresh_s or t < last

    def passed(self, source: str, t: datetime) -> None:
        self.last_pass[source] = t


class MotionGate:
    """Passes a frame when it differs from the previous frame of its camera."""

    name = "motion"

    def __init__(self, settings: MotionGateSettings) -> None:
        self.settings = settings
        self._previous: dict[str, np.ndarray] = {}
        self._refresh = _Refresh(settings.refresh_s)

    def check(self, source: str, thumb: np.ndarray, t: datetime) -> bool:
        previous = self._previous.get(source)
        self._previous[source] = thumb
        moved = previous is None or float(np.mean(np.abs(thumb - previous))) >= self.settings.threshold
        if moved or self._refresh.due(source, t):
            self._refresh.passed(source, t)
            return True
        return False


class LevelGate:
    """Passes an audio window whose RMS level reaches ``min_dbfs``."""

    name = "level"

    def __init__(self, settings: LevelGateSettings) -> None:
        self.settings = settings
        self._refresh = _Refresh(settings.refresh_s)

    def check(self, source: str, dbfs: float, t: datetime) -> bool:
        if dbfs >= self.settings.min_dbfs or self._refresh.due(source, t):
            self._refresh.passed(source, t)
            return True
        return False
