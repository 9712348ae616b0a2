"""``skysentry eval``: score an ONNX model on a class folder — onnxruntime + numpy only.

This module must not import torch (DESIGN §1): ``skysentry eval`` runs from a serving
install. The model's card says whether it is an audio or a vision model and which
threshold turns a score into a detection.

* audio: every file is cut into 1 s windows (hop 1 s; a ~1 s clip is one window) at the
  card's sample rate (44.1 kHz / stereo files are resampled to 16 kHz mono); each window
  carries its file's label and is one sample of the metrics.
* vision: every image is letterboxed exactly as the server does
  (:func:`detectors.imaging.letterbox`); the frame score is one sample. Where YOLO ``.txt``
  labels sit beside the images, predicted boxes (mapped back to the image, NMS at the card's
  IoU) are matched to them for AP@0.5 and AP@0.5:0.95.
* video clips (a class folder of ``.mp4`` … with ``labels.csv``, like ``ddd_video``): field
  evaluation, frame and clip level (:mod:`trainer.field_eval`); long audio clips (several
  windows each, like ``ddd_audio``) also get clip level through the alerting's confirmation rule.
* ``split``: where DIR has a files.csv with a ``group`` column, restrict to one split of the
  same seeded group split the trainer uses (``--split test`` = the held-out test set).
* Dataset shortcut guards apply automatically (DroneNet's stock-photo footer is cropped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from detectors.card import ModelCard
from detectors.imaging import letterbox, nms, unletterbox_boxes
from trainer.audio_io import read_audio, windows
from trainer.data import DEFAULT_SEED, Item, Split, dataset_quirks, list_items
from trainer.field_eval import DEFAULT_FPS, audio_clip_metrics, evaluate_video, is_video_folder
from trainer.metrics import classification_metrics, detection_metrics

AP_SCORE_FLOOR = 0.001  # boxes kept for the PR curve of AP (the server drops below thresholds.box)


@dataclass
class EvalResult:
    metrics: dict
    labels: np.ndarray
    scores: np.ndarray
    items: list[Item] = field(default_factory=list)
    item_of_sample: np.ndarray | None = None  # audio: file index of each window
    detections: list[tuple[np.ndarray, np.ndarray]] | None = None  # vision: boxes, scores per image
    truths: list[np.ndarray] | None = None
    clips: list | None = None  # video: trainer.field_eval.ClipScore per clip


def open_session(model: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])


def read_image(path: Path, crop_bottom: int = 0) -> np.ndarray:
    """RGB uint8, with ``crop_bottom`` rows removed (stock-photo footer guard)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot decode image {path}")
    if crop_bottom and bgr.shape[0] > crop_bottom + 16:
        bgr = bgr[: bgr.shape[0] - crop_bottom]
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_yolo(path: Path, height: int | None = None, crop_bottom: int = 0) -> np.ndarray | None:
    """YOLO ``class cx cy w h`` beside an image → normalised (x1, y1, x2, y2) ``[m, 4]``; None when
    there is no label file. ``height`` (of the uncropped image) re-normalises after a crop."""
    txt = path.with_suffix(".txt")
    if not txt.is_file():
        return None
    rows = [line.split() for line in txt.read_text().splitlines() if line.strip()]
    boxes = np.array([[float(v) for v in r[1:5]] for r in rows], np.float64).reshape(-1, 4)
    out = np.stack([boxes[:, 0] - boxes[:, 2] / 2, boxes[:, 1] - boxes[:, 3] / 2,
                    boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2], axis=1)
    if crop_bottom and height:
        keep_h = height - crop_bottom
        out[:, [1, 3]] = np.clip(out[:, [1, 3]] * height / keep_h, 0, 1)
    out = np.clip(out, 0, 1)
    return out[(out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])].astype(np.float32)


def run_batches(session, name: str, array: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
    outs: dict[str, list[np.ndarray]] = {}
    names = [o.name for o in session.get_outputs()]
    for i in range(0, len(array), batch):
        res = session.run(names, {name: array[i:i + batch]})
        for n, r in zip(names, res):
            outs.setdefault(n, []).append(r)
    return {n: np.concatenate(v) for n, v in outs.items()}


def evaluate_audio(model: Path, card: ModelCard, items: list[Item], session=None) -> EvalResult:
    session = session or open_session(model)
    rate = card.input.sample_rate or 16_000
    n = card.input.shape[1] if isinstance(card.input.shape[1], int) else rate
    wins, labels, owner = [], [], []
    for i, it in enumerate(items):
        w = windows(read_audio(it.path, rate), n)
        wins.append(w)
        labels += [it.positive] * len(w)
        owner += [i] * len(w)
    x = np.concatenate(wins) if wins else np.zeros((0, n), np.int16)
    if card.input.dtype == "float32":
        x = x.astype(np.float32) / 32768.0
    scores = run_batches(session, card.input.name, x)["score"].astype(np.float64) if len(x) else np.zeros(0)
    y = np.asarray(labels, bool)
    metrics = classification_metrics(y, scores, card.thresholds.report)
    metrics["files"] = len(items)
    owner = np.asarray(owner, int)
    metrics.update(audio_clip_metrics(items, owner, scores, report_threshold=card.thresholds.report,
                                      window_s=n / rate, model=(card.name, card.version)))
    return EvalResult(metrics, y, scores, items, owner)


def evaluate_vision(model: Path, card: ModelCard, items: list[Item], crop_bottom: int = 0,
                    session=None) -> EvalResult:
    session = session or open_session(model)
    _, h, w, _ = card.input.shape
    outputs = {o.name for o in session.get_outputs()}
    has_boxes = {"boxes", "box_scores"} <= outputs
    drone = card.labels.index("drone") if "drone" in card.labels else 0
    scores_all, dets, truths, labels = [], [], [], []
    any_labels = False
    for start in range(0, len(items), 32):
        chunk = items[start:start + 32]
        tensors, lbs = [], []
        for it in chunk:
            raw_h = cv2.imread(str(it.path), cv2.IMREAD_UNCHANGED).shape[0] if crop_bottom else None
            rgb = read_image(it.path, crop_bottom)
            t, lb = letterbox(rgb, w, h)
            tensors.append(t)
            lbs.append(lb)
            gt = read_yolo(it.path, raw_h, crop_bottom)
            any_labels |= gt is not None
            truths.append(gt if gt is not None else np.zeros((0, 4), np.float32))
            labels.append(it.positive)
        out = session.run(None, {card.input.name: np.stack(tensors)})
        out = dict(zip([o.name for o in session.get_outputs()], out))
        scores_all.append(out["score"])
        if has_boxes:
            for b, s, lb in zip(out["boxes"], out["box_scores"], lbs):
                if s.ndim == 2:  # a score per class: drone boxes are those whose best class is drone
                    d = s[:, drone]
                    s = np.where(s.argmax(axis=1) == drone, d, 0.0)
                keep = s >= AP_SCORE_FLOOR
                mapped = unletterbox_boxes(b[keep], lb)
                ks = s[keep]
                idx = nms(mapped, ks, card.thresholds.nms_iou, max_boxes=100)
                dets.append((mapped[idx], ks[idx]))
    scores = np.concatenate(scores_all).astype(np.float64) if scores_all else np.zeros(0)
    y = np.asarray(labels, bool)
    metrics = classification_metrics(y, scores, card.thresholds.report)
    if has_boxes and any_labels:
        metrics.update(detection_metrics(dets, truths))
    else:
        metrics.update({"ap50": None, "ap50_95": None})
    return EvalResult(metrics, y, scores, items, None, dets if has_boxes else None, truths)


def evaluate(model: Path, data: Path, split: Split | None = None, seed: int = DEFAULT_SEED,
             crop_bottom: int | None = None, *, fps: float = DEFAULT_FPS, every: int = 1,
             keep_worst: bool = False, progress: bool = True) -> EvalResult:
    """Evaluate ``model`` (card beside it) on the class folder ``data`` (one split of it).
    ``fps``, ``every``, ``keep_worst`` (frames for the report) and ``progress`` apply to video."""
    model = Path(model)
    card = ModelCard.load(model)
    if card.task != "audio" and is_video_folder(Path(data)):
        clips_items = list_items(Path(data), "video", split, seed)
        if not clips_items:
            raise ValueError(f"no clips of split {split!r} in {data}")
        metrics, clips = evaluate_video(model, clips_items, Path(data), fps=fps, every=every, keep_worst=keep_worst,
                                        progress=progress)
        frames = [(f.truth is not None, f.score) for c in clips for f in c.frames if f.scored]
        return EvalResult(metrics, np.array([t for t, _ in frames], bool), np.array([s for _, s in frames]),
                          list(clips_items), clips=clips)
    kind = "audio" if card.task == "audio" else "image"
    items = list_items(Path(data), kind, split, seed)
    if not items:
        raise ValueError(f"no files of split {split!r} in {data}")
    if card.task == "audio":
        return evaluate_audio(model, card, items)
    crop = dataset_quirks(Path(data)).get("crop_bottom", 0) if crop_bottom is None else crop_bottom
    return evaluate_vision(model, card, items, crop)
