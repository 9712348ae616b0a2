"""Where capture → detection and capture → notification time goes, stage by stage.

Every stage is the gap between two timestamps the records already carry, so the stages of one
detection add up to its capture → detection time:

==================  ====================================================================================
window length       audio only: a window is stamped with its first sample and cannot be sent before its
                    last one is recorded (``ce_samples / ce_samplerate``, 1 s by default); counted up to
                    the record's timestamp, so what is left is the producer's own time
producer → broker   the frame's or window's capture time (``ce_time``) → its record's Kafka timestamp
                    (CreateTime: the producer handed it to its client, after JPEG encoding)
queue wait          the input record's timestamp → the processor's consumer fetched it
                    (``timing.received_at``): in the client's batch, on the broker, in the fetch
batch wait          fetched → its micro-batch closed and processing began (``timing.batch_started_at``):
                    faust's stream queue, ``take_events`` filling (≤ ``max_wait_s``), earlier batches
                    being decoded
decode + model      batch began → the model began running it (``timing.inference_started_at``): JPEG
queue               decoding, and earlier batches still on the single inference thread
inference           the model's run of the whole batch (``timing.inference_ended_at``)
publish             inference ended → the detection record's Kafka timestamp (the processor sent it)
output              the detection's record timestamp → the demo's watcher read it (broker, fetch, and
                    the watcher's own event loop, which shares a process with the producers)
==================  ====================================================================================

A detection from an older processor (no ``timing``) contributes only to the stages it has
times for. Capture → notification is split into the processor part (capture → detection
published, of the newest detection the alert cites) and the alerting part (→ webhook delivered:
reading, k-of-n confirmation, the route's ``group_wait``, the outbox, the HTTP call).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from skysentry.messages import Detection

STAGES = ("window length", "producer → broker", "queue wait", "batch wait", "decode + model queue", "inference", "publish", "output")
NOTIFY_STAGES = ("capture → detection published", "detection → webhook (alerting)")


@dataclass(frozen=True)
class Times:
    """What is known of one detection's path, as wall-clock datetimes (None: not known)."""

    captured: datetime
    input_logged: datetime | None  # the input record's Kafka timestamp
    received: datetime | None
    batch_started: datetime | None
    inference_started: datetime | None
    inference_ended: datetime | None
    published: datetime | None  # the detection record's Kafka timestamp
    read: datetime | None
    window_s: float = 0.0  # an audio window's length: it is stamped with its first sample

    @classmethod
    def of(cls, d: Detection, input_logged: datetime | None, published: datetime | None,
           read: datetime | None, window_s: float = 0.0) -> "Times":
        t = d.timing
        return cls(d.captured_at, input_logged, t and t.received_at, t and t.batch_started_at,
                   t and t.inference_started_at, t and t.inference_ended_at, published, read, window_s)

    def stages_ms(self) -> dict[str, float]:
        """Each stage whose two ends are known, in ms. When the processor did not say when it
        fetched the record, queue wait runs to the batch's start (and batch wait is unknown)."""
        filled = None
        if self.window_s and self.input_logged is not None:  # the window's end, but never past its record
            filled = min(self.captured + timedelta(seconds=self.window_s), self.input_logged)
        points = [self.captured, filled or self.captured, self.input_logged, self.received, self.batch_started,
                  self.inference_started, self.inference_ended, self.published, self.read]
        out: dict[str, float] = {}
        for i, name in enumerate(STAGES):
            start, end = points[i], points[i + 1]
            if name == "window length" and filled is None:
                continue
            if name == "queue wait" and end is None:
                end = self.batch_started
            if start is not None and end is not None:
                out[name] = (end - start).total_seconds() * 1000
        return out

    @property
    def total_ms(self) -> float | None:
        return None if self.read is None else (self.read - self.captured).total_seconds() * 1000


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (the same rule as the demo's other latency figures)."""
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


@dataclass
class StageRow:
    stage: str
    n: int
    p50: float | None
    p99: float | None
    tail_mean: float | None  # mean of this stage over the slowest detections (by total)


@dataclass
class Breakdown:
    """One modality's capture → detection: the total and each stage."""

    modality: str
    n: int
    total: StageRow
    stages: list[StageRow] = field(default_factory=list)
    tail_n: int = 0

    def row(self, stage: str) -> StageRow:
        return next(r for r in self.stages if r.stage == stage)


def tail_size(n: int) -> int:
    """How many of the slowest detections the tail column averages: the slowest 1 %, at least 3."""
    return min(n, max(3, n // 100))


def breakdown(modality: str, times: list[Times]) -> Breakdown:
    """p50 and p99 of the total and of each stage, and each stage's mean over the slowest
    detections, which says where the tail's time went (stage p99s do not add up; these do)."""
    done = [t for t in times if t.total_ms is not None]
    totals = [t.total_ms for t in done]
    tail = sorted(done, key=lambda t: t.total_ms)[len(done) - tail_size(len(done)):] if done else []
    out = Breakdown(modality, len(done), StageRow("capture → detection read", len(done), percentile(totals, 50),
                                                  percentile(totals, 99), _mean([t.total_ms for t in tail])),
                    tail_n=len(tail))
    per = [t.stages_ms() for t in done]
    tail_per = [t.stages_ms() for t in tail]
    for name in STAGES:
        values = [s[name] for s in per if name in s]
        out.stages.append(StageRow(name, len(values), percentile(values, 50), percentile(values, 99),
                                   _mean([s[name] for s in tail_per if name in s])))
    return out


@dataclass(frozen=True)
class Notified:
    """One firing notification: the newest detection it cites and when the webhook got it."""

    modality: str
    captured: datetime
    published: datetime | None  # that detection's record timestamp
    delivered: datetime

    def stages_ms(self) -> dict[str, float]:
        out = {"total": (self.delivered - self.captured).total_seconds() * 1000}
        if self.published is not None:
            out[NOTIFY_STAGES[0]] = (self.published - self.captured).total_seconds() * 1000
            out[NOTIFY_STAGES[1]] = (self.delivered - self.published).total_seconds() * 1000
        return out


def notify_breakdown(items: list[Notified]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """Per modality of the alert's newest detection: stage → (p50, max, n) in ms (a run has a
    handful of alerts, so the maximum stands in for a p99)."""
    out: dict[str, dict[str, tuple[float, float, int]]] = {}
    for modality in sorted({i.modality for i in items}):
        per = [i.stages_ms() for i in items if i.modality == modality]
        out[modality] = {name: (percentile(v, 50), max(v), len(v))
                         for name in ("total", *NOTIFY_STAGES) if (v := [s[name] for s in per if name in s])}
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
