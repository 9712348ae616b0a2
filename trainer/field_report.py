"""The field report of ``skysentry eval --report DIR``: what an operator would ask first.

* ``recall_by_distance.png``: frame recall (IoU 0.5) and clip recall per distance bin: how far
  out the camera still catches a drone.
* ``false_alarms_by_class.png``: frame false-positive rate and clip false-alarm rate per
  confuser class (bird, airplane, helicopter; audio: its negative folders).
* ``contact_sheet.png``: the worst false alarms (highest drone boxes in non-drone clips) and the
  worst misses (labelled drone frames with the lowest drone score), one per clip, each as the
  whole frame and a zoom on the target (green = label, red = predicted drone box).

The bars need matplotlib (the ``train`` extra); the contact sheet only OpenCV.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from trainer.field_eval import CONFUSERS, DISTANCE_BINS, ClipScore, Sample
from trainer.metrics import box_iou

GREEN, RED, WHITE, BLACK, GREY = (0, 200, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0), (60, 60, 60)  # BGR
THUMB, ZOOM, CAPTION = (320, 256), 256, 22


def plot_bars(path: Path, title: str, series: dict[str, dict[str, float | None]], ylabel: str,
              counts: dict[str, int] | None = None) -> Path:
    """Grouped bars, one group per category, one bar per series; missing values are left out
    and the categories' sample counts go under their names."""
    from trainer.report import _plt

    plt = _plt()
    cats = list(next(iter(series.values())).keys())
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(cats), 3.6))
    for k, (name, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(cats))]
        ys = [values.get(c) for c in cats]
        bars = ax.bar([x for x, y in zip(xs, ys) if y is not None], [y for y in ys if y is not None], width,
                      label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    labels = [f"{c}\n(n={counts[c]})" if counts and c in counts else c for c in cats]
    ax.set_xticks(range(len(cats)), labels)
    ax.set(ylim=(0, 1.25), ylabel=ylabel, title=title)
    ax.legend(fontsize=8, loc="upper center", ncol=len(series), frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def field_plots(folder: Path, metrics: dict, clips: Sequence[ClipScore] | None = None) -> list[Path]:
    """The two bar charts, from the metrics (and the clips, for the counts under each bar)."""
    out = []
    bins = [b for b in DISTANCE_BINS if metrics.get(f"clip_recall_{b}") is not None]
    if bins:
        counts = {b: sum(1 for c in clips if c.item.positive and c.distance == b) for b in bins} if clips else None
        out.append(plot_bars(folder / "recall_by_distance.png", "Drone recall by distance",
                             {"frame (IoU 0.5)": {b: metrics.get(f"frame_recall_iou50_{b}") for b in bins},
                              "clip (alert fired)": {b: metrics.get(f"clip_recall_{b}") for b in bins}},
                             "recall", counts))
    classes = [k.removeprefix("clip_false_alarm_") for k in metrics
               if k.startswith("clip_false_alarm_") and k != "clip_false_alarm_rate"
               and metrics[k] is not None]
    if classes:
        series = {"clip (alert fired)": {c: metrics.get(f"clip_false_alarm_{c}") for c in classes}}
        if any(metrics.get(f"frame_fp_rate_{c}") is not None for c in classes):
            series = {"frame (drone box)": {c: metrics.get(f"frame_fp_rate_{c}") for c in classes}, **series}
        counts = {c: sum(1 for x in clips if x.item.label == c) for c in classes} if clips else None
        out.append(plot_bars(folder / "false_alarms_by_class.png", "False alarms on confusers", series,
                             "share of frames / clips", counts))
    return out


def _box_px(box: np.ndarray, w: int, h: int) -> tuple[tuple[int, int], tuple[int, int]]:
    return (int(box[0] * w), int(box[1] * h)), (int(round(box[2] * w)), int(round(box[3] * h)))


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45, color=WHITE) -> None:
    """Text on a dark patch, readable on sky and on ground alike."""
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(img, (org[0] - 1, org[1] - h - 2), (org[0] + w + 1, org[1] + base), (25, 25, 25), -1)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def _draw(img: np.ndarray, s: Sample, label: str, preds: np.ndarray, pred_scores: np.ndarray, offset=(0, 0),
          scale=1.0, thickness: int = 1) -> None:
    """Label (green) and predictions (red, with score) on ``img``, a view of the frame that
    starts at ``offset`` (frame pixels) and is ``scale`` times its size."""
    fh, fw = s.rgb.shape[:2]

    def px(box):
        (x1, y1), (x2, y2) = _box_px(box, fw, fh)
        return ((int((x1 - offset[0]) * scale), int((y1 - offset[1]) * scale)),
                (int((x2 - offset[0]) * scale), int((y2 - offset[1]) * scale)))

    if s.frame.target is not None:
        p1, p2 = px(s.frame.target)
        cv2.rectangle(img, p1, p2, GREEN, thickness)
        if label != "drone":  # a confuser's own label says what the camera really saw
            _text(img, label, (p1[0], p2[1] + 12), 0.4, (80, 230, 80))
    for b, sc in zip(preds, pred_scores):
        p1, p2 = px(b)
        cv2.rectangle(img, p1, p2, RED, thickness)
        _text(img, f"{sc:.2f}", (p1[0], max(p1[1] - 3, 10)), 0.4, (80, 80, 255))


def _tile(s: Sample, kind: str, label: str, distance: str | None, box_threshold: float) -> np.ndarray:
    """Whole frame (left) and a zoom on the target (right), caption below."""
    f = s.frame
    keep = f.box_scores >= box_threshold
    if kind == "false alarm" and f.box_scores.size:
        keep[int(np.argmax(f.box_scores))] = True  # the box that put this frame here, whatever its score
    preds, pscores = f.boxes[keep], f.box_scores[keep]
    bgr = cv2.cvtColor(s.rgb, cv2.COLOR_RGB2BGR)
    fh, fw = bgr.shape[:2]
    scale = min(THUMB[0] / fw, THUMB[1] / fh)
    thumb = np.full((THUMB[1], THUMB[0], 3), 40, np.uint8)
    small = cv2.resize(bgr, (int(fw * scale), int(fh * scale)), interpolation=cv2.INTER_AREA)
    thumb[:small.shape[0], :small.shape[1]] = small
    _draw(thumb, s, label, preds, pscores, scale=scale)
    # zoom: a square around the label (miss) or the top prediction (false alarm)
    focus = f.truth if kind == "miss" or not pscores.size else preds[int(np.argmax(pscores))]
    (x1, y1), (x2, y2) = _box_px(focus, fw, fh) if focus is not None else ((fw // 2, fh // 2), (fw // 2, fh // 2))
    side = int(min(max(64, 2.5 * max(x2 - x1, y2 - y1)), fw, fh))
    ox = int(np.clip((x1 + x2) // 2 - side // 2, 0, fw - side))
    oy = int(np.clip((y1 + y2) // 2 - side // 2, 0, fh - side))
    zoom = cv2.resize(bgr[oy:oy + side, ox:ox + side], (ZOOM, ZOOM), interpolation=cv2.INTER_NEAREST)
    _draw(zoom, s, label, preds, pscores, offset=(ox, oy), scale=ZOOM / side, thickness=2)
    _text(zoom, f"zoom x{ZOOM / side:.1f}", (4, ZOOM - 6), 0.4)
    caption = np.full((CAPTION, THUMB[0] + ZOOM, 3), 30, np.uint8)
    if kind == "miss":
        iou = float(box_iou(preds, f.truth[None]).max()) if len(preds) else 0.0
        text = f"MISS {s.rel} ({distance or '?'}) frame {s.index + 1}: drone score {f.score:.2f}, best IoU {iou:.2f}"
    else:
        top = float(f.box_scores.max()) if f.box_scores.size else 0.0
        text = f"FALSE ALARM {s.rel} frame {s.index + 1}: box {top:.2f}, drone score {f.score:.2f}"
    _text(caption, text, (4, 15), 0.42, (80, 80, 255) if kind == "false alarm" else (0, 220, 255))
    tile = np.concatenate([np.concatenate([thumb, zoom], axis=1), caption], axis=0)
    cv2.rectangle(tile, (0, 0), (tile.shape[1] - 1, tile.shape[0] - 1), GREY, 1)
    return tile


def _section(title: str, tiles: list[np.ndarray], cols: int) -> np.ndarray:
    tw = THUMB[0] + ZOOM
    header = np.full((34, tw * cols, 3), 255, np.uint8)
    cv2.putText(header, title, (8, 23), cv2.FONT_HERSHEY_SIMPLEX, 0.6, BLACK, 1, cv2.LINE_AA)
    if not tiles:
        body = np.full((40, tw * cols, 3), 255, np.uint8)
        cv2.putText(body, "none", (8, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.55, GREY, 1, cv2.LINE_AA)
        return np.concatenate([header, body], axis=0)
    blank = np.full_like(tiles[0], 255)
    tiles = tiles + [blank] * (-len(tiles) % cols)
    rows = [np.concatenate(tiles[i:i + cols], axis=1) for i in range(0, len(tiles), cols)]
    return np.concatenate([header, *rows], axis=0)


def contact_sheet(path: Path, clips: Sequence[ClipScore], box_threshold: float, per_section: int = 8,
                  cols: int = 2) -> Path | None:
    """The worst false alarms and worst misses (one frame per clip at most) in one PNG; None
    when no clip kept a frame (evaluated without ``keep_worst``)."""
    fas = sorted((c for c in clips if not c.item.positive and c.worst), key=lambda c: -c.worst.key)[:per_section]
    misses = sorted((c for c in clips if c.item.positive and c.worst), key=lambda c: -c.worst.key)[:per_section]
    if not fas and not misses:
        return None
    confusers = "/".join(sorted({c.item.label for c in clips if not c.item.positive}, key=_confuser_order))
    sheet = np.concatenate([
        _section(f"Worst false alarms: highest drone box in {confusers or 'non-drone'} clips "
                 "(green = label, red = predicted drone)",
                 [_tile(c.worst, "false alarm", c.item.label, None, box_threshold) for c in fas], cols),
        _section("Worst misses: labelled drone frames with the lowest drone score (green = label, red = prediction)",
                 [_tile(c.worst, "miss", c.item.label, c.distance, box_threshold) for c in misses], cols),
    ], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), sheet)
    return path


def _confuser_order(label: str) -> tuple[int, str]:
    return (CONFUSERS.index(label) if label in CONFUSERS else len(CONFUSERS), label)
