"""Evaluation metrics in plain numpy (``skysentry eval`` runs without torch or scikit-learn).

Classification: precision / recall / F1 at a threshold, ROC-AUC (Mann–Whitney, ties counted
half), TPR at a fixed FPR (the best TPR whose FPR does not exceed it). Detection: AP over
IoU thresholds, COCO style (greedy matching by score, 101-point interpolated precision).
Metrics that need a class that is absent (e.g. ROC-AUC without negatives) are ``None``.
"""

from __future__ import annotations

import numpy as np


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), thresholds descending, starting at +inf (fpr = tpr = 0)."""
    y = np.asarray(labels, bool)
    s = np.asarray(scores, np.float64)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], y.size - 1] if y.size else np.zeros(0, int)
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    P, N = max(int(y.sum()), 0), int((~y).sum())
    tpr = np.r_[0.0, tps / P] if P else np.r_[0.0, np.full(tps.size, np.nan)]
    fpr = np.r_[0.0, fps / N] if N else np.r_[0.0, np.full(fps.size, np.nan)]
    return fpr, tpr, np.r_[np.inf, s[distinct]]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    y = np.asarray(labels, bool)
    s = np.asarray(scores, np.float64)
    P, N = int(y.sum()), int((~y).sum())
    if P == 0 or N == 0:
        return None
    order = np.argsort(s, kind="stable")
    ranks = np.empty(s.size, np.float64)
    sorted_s = s[order]
    # average ranks over ties
    _, start, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = start + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - P * (P + 1) / 2.0) / (P * N))


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, max_fpr: float) -> float | None:
    y = np.asarray(labels, bool)
    if y.all() or not y.any():
        return None
    fpr, tpr, _ = roc_curve(y, scores)
    ok = fpr <= max_fpr + 1e-12
    return float(tpr[ok].max())


def pr_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) at every distinct threshold, recall increasing."""
    fpr, tpr, thr = roc_curve(labels, scores)
    y = np.asarray(labels, bool)
    P, N = int(y.sum()), int((~y).sum())
    tp = tpr[1:] * P
    fp = np.nan_to_num(fpr[1:]) * N
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-12), 1.0)
    return precision, tpr[1:]


def average_precision_score(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the precision-recall curve (step-wise: mean precision at each true
    positive's rank, ties counted together); None without both classes."""
    y = np.asarray(labels, bool)
    if not y.any() or y.all():
        return None
    precision, recall = pr_curve(y, np.asarray(scores, np.float64))
    prev = np.concatenate([[0.0], recall[:-1]])
    return float(np.sum((recall - prev) * precision))


def confusion(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, int]:
    y = np.asarray(labels, bool)
    p = np.asarray(scores, np.float64) >= threshold
    return {"tp": int((y & p).sum()), "fp": int((~y & p).sum()), "tn": int((~y & ~p).sum()),
            "fn": int((y & ~p).sum())}


def classification_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict:
    """n, positives, negatives, precision, recall, f1, accuracy, roc_auc, tpr_at_fpr_0.01/0.05,
    and the confusion counts. Where there are no negatives, precision/F1/AUC/TPR@FPR are None
    (a folder of drones only cannot measure false alarms)."""
    y = np.asarray(labels, bool)
    c = confusion(y, scores, threshold)
    P, N = int(y.sum()), int((~y).sum())
    recall = c["tp"] / P if P else None
    has_neg = N > 0
    precision = (c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0) if has_neg and P else None
    f1 = (2 * precision * recall / (precision + recall) if precision and recall else 0.0) \
        if precision is not None and recall is not None else None
    return {
        "n": int(y.size), "positives": P, "negatives": N, "threshold": float(threshold),
        "precision": precision, "recall": recall, "f1": f1,
        "accuracy": (c["tp"] + c["tn"]) / y.size if y.size else None,
        "fpr": c["fp"] / N if N else None,
        "roc_auc": roc_auc(y, scores),
        "tpr_at_fpr_0.01": tpr_at_fpr(y, scores, 0.01),
        "tpr_at_fpr_0.05": tpr_at_fpr(y, scores, 0.05),
        **c,
    }


# -------------------------------------------------------------------------------- detection


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[len(a), len(b)]`` of (x1, y1, x2, y2) boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def average_precision(preds: list[tuple[np.ndarray, np.ndarray]], truths: list[np.ndarray],
                      iou_threshold: float) -> float | None:
    """AP of one class at one IoU: ``preds[i] = (boxes [k,4], scores [k])`` and
    ``truths[i] = boxes [m,4]`` per image. Greedy matching, highest score first; 101-point
    interpolated precision (COCO). None when there are no truth boxes."""
    n_gt = sum(len(t) for t in truths)
    if n_gt == 0:
        return None
    records = []  # (score, image, box index)
    for i, (boxes, scores) in enumerate(preds):
        for j in range(len(scores)):
            records.append((float(scores[j]), i, j))
    records.sort(key=lambda r: -r[0])
    matched = [np.zeros(len(t), bool) for t in truths]
    ious = [box_iou(p[0], t) if len(t) and len(p[0]) else None for p, t in zip(preds, truths)]
    tp = np.zeros(len(records))
    for k, (_, i, j) in enumerate(records):
        if ious[i] is None:
            continue
        row = np.where(matched[i], -1.0, ious[i][j])
        best = int(np.argmax(row))
        if row[best] >= iou_threshold:
            matched[i][best] = True
            tp[k] = 1
    ctp = np.cumsum(tp)
    cfp = np.cumsum(1 - tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    # precision envelope, sampled at 101 recall points
    precision = np.maximum.accumulate(precision[::-1])[::-1] if precision.size else precision
    points = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, points, side="left")
    sampled = np.array([precision[i] if i < precision.size else 0.0 for i in idx])
    return float(sampled.mean())


def detection_metrics(preds: list[tuple[np.ndarray, np.ndarray]], truths: list[np.ndarray]) -> dict:
    """ap50, ap75 and ap50_95 (mean over IoU 0.50:0.05:0.95)."""
    aps = {round(t, 2): average_precision(preds, truths, t) for t in np.arange(0.5, 0.96, 0.05)}
    if aps[0.5] is None:
        return {"ap50": None, "ap75": None, "ap50_95": None, "boxes": 0}
    return {"ap50": aps[0.5], "ap75": aps[0.75], "ap50_95": float(np.mean(list(aps.values()))),
            "boxes": int(sum(len(t) for t in truths))}


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray, lo: float = 0.2, hi: float = 0.8) -> float:
    """The threshold in [lo, hi] (0.01 steps) with the best F1; ties go to the lowest (recall
    matters more than a hair of precision for a detector that confirms over several windows)."""
    y = np.asarray(labels, bool)
    best_t, best_f1 = 0.5, -1.0
    for t in np.round(np.arange(lo, hi + 1e-9, 0.01), 2):
        f1 = classification_metrics(y, scores, float(t))["f1"] or 0.0
        if f1 > best_f1 + 1e-9:
            best_t, best_f1 = float(t), f1
    return best_t
