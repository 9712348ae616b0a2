"""Field evaluation (DESIGN §5, "the field decides"): real outdoor clips, judged the way an
operator meets them.

* **video** (a class folder of clips with ``files.csv`` and ``labels.csv``, like
  ``ddd_video``): frames go through :class:`detectors.vision.VisionDetector` exactly as the
  vision processor runs them and are scored against each clip's one labelled target: AP@0.5 of
  drone boxes over every frame, recall at IoU 0.5 per distance bin, and the share of confuser
  frames (bird, airplane, helicopter) that show a drone box.
* **clip level** (video, and audio clips of several windows): what a camera would send (frames
  at ``fps``) or a microphone's consecutive 1 s windows become detections, and the alerting
  service's *own* confirmation rule decides whether the clip raises an alert: its Lua script
  (:class:`alerting.state.AlertState`, default :class:`alerting.config.AlertingSettings`) in a
  real Redis. A copy of the rule could drift from the one that pages people; this cannot.

"At the detector's thresholds" means what reaches the operator: the processor emits a
detection only when the frame's drone score reaches the report threshold, and shows the drone
boxes the detector keeps (card ``thresholds.box``). AP alone looks below those thresholds (boxes
down to :data:`AP_BOX_FLOOR`), since it integrates over all of them.

Layering (DESIGN §1): a dev tool, so it imports the public classes of ``alerting.state`` /
``alerting.config``, and ``deploy.local.stack`` to start a throwaway Redis the way the local
stack does (both lazily, only for clip level). Nothing here imports torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np

from skysentry.config import CameraSettings
from trainer.data import POSITIVE, VIDEO_EXT, Item
from trainer.metrics import average_precision, box_iou, classification_metrics

DEFAULT_FPS = CameraSettings().fps  # what a camera sends by default: clip level samples at this rate
DISTANCE_BINS = ("close", "medium", "distant")
CONFUSERS = ("bird", "airplane", "helicopter")
AP_BOX_FLOOR = 0.001  # boxes kept for AP's precision-recall curve
BATCH = 8
SITE = "field-eval"

Window = tuple[int, float, float]  # (input_seq, seconds from the clip's start, drone score)


# ------------------------------------------------------------------------------ video frames


@dataclass(slots=True)
class FrameScore:
    """One inferred frame of a clip."""

    index: int  # 0-based decoded frame (labels.csv frame = index + 1)
    score: float  # the frame's drone score (``VisionResult.score``)
    boxes: np.ndarray  # [k, 4] normalised drone boxes, down to AP_BOX_FLOOR
    box_scores: np.ndarray  # [k]
    truth: np.ndarray | None  # [4] normalised label box (drone clips only), None when not visible
    scored: bool  # counts in the frame metrics (every ``every``-th frame)
    sampled: bool  # a frame the camera would send (clip level)
    target: np.ndarray | None = None  # [4] the labelled target whatever its class (the report draws it)
    window_score: float | None = None  # sampled frames: the score the processor reports on (may be smoothed)


@dataclass(slots=True)
class Sample:
    """A frame kept for the report's contact sheet."""

    rel: str
    index: int
    rgb: np.ndarray
    frame: FrameScore
    key: float  # how bad: top drone-box score (false alarm) or 1 - frame score (miss)


@dataclass
class ClipScore:
    """Every inferred frame of one clip, and whether the alerting would have fired."""

    item: Item
    video_fps: float
    step: int  # decoded frames per camera frame
    frames: list[FrameScore] = field(default_factory=list)
    decoded: int = 0
    alerted: bool | None = None
    worst: Sample | None = None  # highest drone box of a non-drone clip / lowest-scoring drone frame

    @property
    def distance(self) -> str | None:
        return self.item.meta.get("distance_bin") or None

    def windows(self) -> list[Window]:
        """The camera's frames as alerting windows: ``input_seq`` = sampled frame number."""
        return [(f.index // self.step, f.index / self.video_fps, f.window_score) for f in self.frames if f.sampled]


def is_video_folder(root: Path) -> bool:
    """A class folder holding video clips (rather than images)."""
    return any(f.suffix.lower() in VIDEO_EXT for d in Path(root).iterdir() if d.is_dir() for f in d.rglob("*"))


def read_labels(root: Path) -> dict[str, dict[int, tuple[float, float, float, float]]]:
    """``labels.csv`` → {file: {frame (1-based): (x, y, w, h) pixels}}; {} without one."""
    path = Path(root) / "labels.csv"
    out: dict[str, dict[int, tuple[float, float, float, float]]] = {}
    if path.is_file():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                out.setdefault(row["file"], {})[int(row["frame"])] = tuple(float(row[k]) for k in "xywh")
    return out


def _normalised(box: tuple[float, float, float, float], width: int, height: int) -> np.ndarray:
    x, y, w, h = box
    return np.clip(np.array([x / width, y / height, (x + w) / width, (y + h) / height], np.float32), 0, 1)


def decode_frames(cap: cv2.VideoCapture, wanted: Callable[[int], bool]) -> Iterator[tuple[int, np.ndarray | None]]:
    """(index, RGB or None) for every frame; frames not wanted are only grabbed, not decoded to RGB."""
    i = 0
    while True:
        if wanted(i):
            ok, bgr = cap.read()
            if not ok:
                return
            yield i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        else:
            if not cap.grab():
                return
            yield i, None
        i += 1


def score_clip(detector, item: Item, labels: dict[int, tuple[float, float, float, float]], *,
               fps: float = DEFAULT_FPS, every: int = 1, batch: int = BATCH, keep_worst: bool = False) -> ClipScore:
    """Run ``detector`` on every ``every``-th frame and on every frame the camera would send at
    ``fps`` (those always: clip level needs them), ``batch`` frames per ``infer`` call. The
    sampled frames are scored as the vision processor scores a camera's frames
    (``detector.frame_score``: smoothed over the clip's earlier sampled frames when the card
    asks for it)."""
    cap = cv2.VideoCapture(str(item.path))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {item.path}")
    video_fps = cap.get(cv2.CAP_PROP_FPS) or float(item.meta.get("fps") or 30.0)
    clip = ClipScore(item, video_fps, max(1, round(video_fps / fps)))
    pending: list[tuple[int, np.ndarray]] = []
    frame_score, source = getattr(detector, "frame_score", None), f"clip:{item.rel}"

    def flush() -> None:
        results = detector.infer([detector.prepare_rgb(rgb) for _, rgb in pending])
        for (i, rgb), res in zip(pending, results):
            drone = [b for b in res.boxes if b.label == POSITIVE]
            boxes = np.array([[b.x1, b.y1, b.x2, b.y2] for b in drone], np.float32).reshape(-1, 4)
            scores = np.array([b.score for b in drone], np.float32)
            label = labels.get(i + 1)
            h, w = rgb.shape[:2]
            target = _normalised(label, w, h) if label else None
            sampled = i % clip.step == 0
            frame = FrameScore(i, float(res.score), boxes, scores, target if item.positive else None,
                               i % every == 0, sampled, target)
            if sampled:
                frame.window_score = frame_score(source, i / video_fps, res) if frame_score else frame.score
            clip.frames.append(frame)
            if keep_worst:
                _keep_worst(clip, frame, rgb)
        pending.clear()

    try:
        for i, rgb in decode_frames(cap, lambda i: i % every == 0 or i % clip.step == 0):
            clip.decoded = i + 1
            if rgb is not None:
                pending.append((i, rgb))
                if len(pending) >= batch:
                    flush()
        if pending:
            flush()
    finally:
        cap.release()
        if getattr(detector, "tracks", None) is not None:
            detector.tracks.forget(source)
    return clip


def _keep_worst(clip: ClipScore, frame: FrameScore, rgb: np.ndarray) -> None:
    """Remember the clip's worst frame: its highest drone box in a non-drone clip, its
    lowest-scoring labelled frame in a drone clip."""
    if clip.item.positive:
        key = 1.0 - frame.score if frame.truth is not None else None
    else:
        key = float(frame.box_scores.max()) if frame.box_scores.size else None
    if key is not None and (clip.worst is None or key > clip.worst.key):
        clip.worst = Sample(clip.item.rel, frame.index, rgb.copy(), frame, key)


# ------------------------------------------------------------------------------ metrics


def _share(hits: int, total: int) -> float | None:
    return hits / total if total else None


def shown_boxes(frame: FrameScore, report_threshold: float, box_threshold: float) -> np.ndarray:
    """The drone boxes an operator sees: the detector's boxes of a frame it reports."""
    if frame.score < report_threshold:
        return np.zeros((0, 4), np.float32)
    return frame.boxes[frame.box_scores >= box_threshold]


def frame_metrics(clips: Sequence[ClipScore], report_threshold: float, box_threshold: float) -> dict:
    """``frame_ap50`` over every scored frame of every clip (drone boxes in confuser clips are
    false positives), ``frame_recall_iou50[_bin]`` over labelled drone frames and
    ``frame_fp_rate[_class]`` over the frames of non-drone clips, at the detector's thresholds."""
    preds, truths = [], []
    recall: dict[str, list[int]] = {}  # bin → [hits, frames]
    fp: dict[str, list[int]] = {}  # class → [frames with a drone box, frames]
    for clip in clips:
        for f in clip.frames:
            if not f.scored:
                continue
            preds.append((f.boxes, f.box_scores))
            truths.append(f.truth[None] if f.truth is not None else np.zeros((0, 4), np.float32))
            shown = shown_boxes(f, report_threshold, box_threshold)
            if clip.item.positive and f.truth is not None:
                hit = bool(len(shown)) and float(box_iou(shown, f.truth[None]).max()) >= 0.5
                for key in ("", clip.distance):
                    if key is not None:
                        r = recall.setdefault(key, [0, 0])
                        r[0], r[1] = r[0] + hit, r[1] + 1
            elif not clip.item.positive:
                for key in ("", clip.item.label):
                    c = fp.setdefault(key, [0, 0])
                    c[0], c[1] = c[0] + bool(len(shown)), c[1] + 1
    out: dict = {"frame_ap50": average_precision(preds, truths, 0.5)}
    for b in ("", *DISTANCE_BINS, *sorted(set(recall) - {"", *DISTANCE_BINS})):
        out["frame_recall_iou50" + (f"_{b}" if b else "")] = _share(*recall.get(b, (0, 0)))
    for c in ("", *CONFUSERS, *sorted(set(fp) - {"", *CONFUSERS})):
        out["frame_fp_rate" + (f"_{c}" if c else "")] = _share(*fp.get(c, (0, 0)))
    out["frames"] = len(preds)
    return out


def clip_metrics(labels: Sequence[str], alerted: Sequence[bool], distances: Sequence[str | None] | None = None,
                 confusers: Sequence[str] = ()) -> dict:
    """Clip recall (per distance bin when given), false-alarm rate (overall and per negative
    class), precision and F1 of "the clip raised an alert"."""
    y = np.array([lb == POSITIVE for lb in labels], bool)
    a = np.asarray(alerted, bool)
    m = classification_metrics(y, a.astype(np.float64), 0.5)
    out = {"clips": len(y), "clips_alerted": int(a.sum()), "clip_recall": m["recall"],
           "clip_false_alarm_rate": m["fpr"], "clip_precision": m["precision"], "clip_f1": m["f1"]}
    if distances is not None:
        bins = [*DISTANCE_BINS, *sorted({d for d in distances if d} - set(DISTANCE_BINS))]
        for b in bins:
            sel = y & np.array([d == b for d in distances], bool)
            out[f"clip_recall_{b}"] = _share(int(a[sel].sum()), int(sel.sum()))
    negatives = [*confusers, *sorted({lb for lb in labels if lb != POSITIVE} - set(confusers))]
    for c in negatives:
        sel = np.array([lb == c for lb in labels], bool)
        out[f"clip_false_alarm_{c}"] = _share(int(a[sel].sum()), int(sel.sum()))
    return out


# ------------------------------------------------------------------------------ confirmation


@contextlib.contextmanager
def alerting_redis() -> Iterator[str]:
    """A Redis URL for the confirmation rule: ``REDIS_URL`` when set, else a throwaway
    ``redis-server`` on a free loopback port, started and stopped by ``deploy.local.stack``
    (the code behind ``skysentry stack up``) in a temporary state dir."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    if shutil.which("redis-server") is None:
        raise RuntimeError("clip-level evaluation runs the alerting's confirmation rule in Redis, and "
                           "redis-server is not on PATH: run `make setup` (or set REDIS_URL to a running Redis)")
    from deploy.local import stack

    with tempfile.TemporaryDirectory(prefix="skysentry-eval-redis-") as tmp:
        try:
            yield stack.start_redis(Path(tmp), port=0)
        finally:
            stack.down(Path(tmp))


def confirm_clips(clips: Sequence[Sequence[Window]], *, modality: str, report_threshold: float,
                  model: tuple[str, str] = ("eval", "0"), redis_url: str | None = None) -> list[bool]:
    """Whether the alerting service would raise an alert for each clip, fed its windows in order.

    A window becomes a detection as the processor decides (score ≥ ``report_threshold``); the
    alerting consumer then drops detections below ``confirm.threshold`` (alerting/consumer.py)
    and hands the rest to :meth:`AlertState.observe_many`, whose Lua script applies k-of-n within
    the horizon. Each clip is its own source under its own key prefix; the keys are deleted after.
    """
    if not any(clips):
        return [False] * len(clips)
    if redis_url is None:
        with alerting_redis() as url:
            return confirm_clips(clips, modality=modality, report_threshold=report_threshold, model=model,
                                 redis_url=url)
    return asyncio.run(_confirm(redis_url, clips, modality, report_threshold, model))


async def _confirm(url: str, clips: Sequence[Sequence[Window]], modality: str, report_threshold: float,
                   model: tuple[str, str]) -> list[bool]:
    import redis.asyncio as aioredis

    from alerting.config import AlertingSettings
    from alerting.state import AlertState
    from skysentry.messages import Detection, ModelRef

    base = AlertingSettings()
    run = f"skysentry-eval:{uuid.uuid4().hex[:10]}"
    t0 = datetime.now(timezone.utc)
    ref = ModelRef(name=model[0], version=model[1])
    client = aioredis.from_url(url, decode_responses=True)
    out: list[bool] = []
    try:
        for i, windows in enumerate(clips):
            state = AlertState(client, base.model_copy(update={"key_prefix": f"{run}:{i}"}))
            dets = [Detection(site=SITE, source=f"clip-{i}", modality=modality, score=score, model=ref,
                              input_event_id=f"clip-{i}#{seq}", input_seq=seq, captured_at=t0 + timedelta(seconds=t),
                              processed_at=t0)
                    for seq, t, score in windows if score >= report_threshold and score >= base.confirm.threshold]
            out.append(any(o.outcome == "fired" for o in await state.observe_many(dets)))
    finally:
        keys = [k async for k in client.scan_iter(match=f"{run}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    return out


def confirm_settings() -> tuple[int, int, float]:
    """(k, n, threshold) of the alerting's default confirmation (alerting/config.py)."""
    from alerting.config import AlertingSettings

    c = AlertingSettings().confirm
    return c.k, c.n, c.threshold


def confirmed(hits: np.ndarray, k: int | None = None, n: int | None = None) -> bool:
    """Whether the alerting's confirmation fires on one clip's consecutive windows: at some
    window, at least ``k`` of the last ``n`` (fewer at the start of the clip) were hits. A replay
    of the rule for training-time choices (validation clips; no Redis needed); every reported
    test number comes from :func:`confirm_clips`, the alerting's own rule."""
    if k is None or n is None:
        k0, n0, _ = confirm_settings()
        k, n = k or k0, n or n0
    c = np.r_[0, np.cumsum(np.asarray(hits, bool).astype(int))]
    return bool(any(c[i + 1] - c[max(0, i + 1 - n)] >= k for i in range(len(c) - 1)))


def alert_threshold(report_at: float) -> float:
    """The score a window needs to count toward a confirmation: the processor only sends
    detections at or above the card's report threshold, the alerting counts those at or above
    its confirmation threshold (0.6)."""
    return max(confirm_settings()[2], report_at)


def confirm_rule() -> str:
    """The rule clip level applies, for the record."""
    from alerting.config import AlertingSettings

    c = AlertingSettings().confirm
    return f"alerting confirm: {c.k} of {c.n} windows >= {c.threshold:g} within {c.horizon:g} s"


# ------------------------------------------------------------------------------ entry points


def evaluate_video(model: Path, items: Sequence[Item], root: Path, *, fps: float = DEFAULT_FPS, every: int = 1,
                   keep_worst: bool = False, detector=None, progress: bool = True) -> tuple[dict, list[ClipScore]]:
    """Frame and clip metrics of a vision model on the clips ``items`` of the video folder ``root``.
    ``detector`` (anything with ``prepare_rgb``/``infer``/``report_threshold``) replaces the
    model's :class:`VisionDetector` in tests."""
    from detectors.card import ModelCard

    card = ModelCard.load(Path(model))
    if detector is None:
        from detectors.vision import VisionDetector, VisionDetectorConfig

        detector = VisionDetector.load(VisionDetectorConfig(model=Path(model), box_threshold=AP_BOX_FLOOR))
    if every < 1 or fps <= 0:
        raise ValueError("--every must be >= 1 and --fps > 0")
    labels = read_labels(root)
    clips: list[ClipScore] = []
    with _progress(progress) as bar:
        task = bar.add_task("clips", total=len(items))
        for item in items:
            bar.update(task, description=item.rel)
            clips.append(score_clip(detector, item, labels.get(item.rel, {}), fps=fps, every=every,
                                    keep_worst=keep_worst))
            bar.advance(task)
    report, box = detector.report_threshold, card.thresholds.box
    alerted = confirm_clips([c.windows() for c in clips], modality="vision", report_threshold=report,
                            model=(card.name, card.version))
    for clip, a in zip(clips, alerted):
        clip.alerted = a
    metrics = {"threshold": report, "box_threshold": box, "fps": fps, "every": every, "confirm": confirm_rule(),
               **frame_metrics(clips, report, box),
               "frames_decoded": sum(c.decoded for c in clips),
               "frames_sampled": sum(f.sampled for c in clips for f in c.frames),
               **clip_metrics([c.item.label for c in clips], alerted, [c.distance for c in clips], CONFUSERS)}
    return metrics, clips


def audio_clip_metrics(items: Sequence[Item], owner: np.ndarray, scores: np.ndarray, *, report_threshold: float,
                       window_s: float, model: tuple[str, str]) -> dict:
    """Clip level of an audio folder of long clips: each clip's consecutive windows
    (``input_seq`` = window index) through the alerting's confirmation rule. Empty when no clip
    has enough windows for the rule to fire (e.g. 1 s clips)."""
    from alerting.config import AlertingSettings

    per_clip = [[(j, j * window_s, float(s)) for j, s in enumerate(scores[owner == i])] for i in range(len(items))]
    if max((len(w) for w in per_clip), default=0) < AlertingSettings().confirm.k:
        return {}
    alerted = confirm_clips(per_clip, modality="audio", report_threshold=report_threshold, model=model)
    return {"confirm": confirm_rule(), **clip_metrics([it.label for it in items], alerted)}


@contextlib.contextmanager
def _progress(enabled: bool):
    """A rich progress bar on stderr (stdout's last line stays the JSON)."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not enabled) as bar:
        yield bar
