"""Run reports for people: metrics.json plus PR / ROC / confusion-matrix plots and sample
detections drawn on images (matplotlib, headless)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from trainer.metrics import confusion, pr_curve, roc_curve


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_metrics(folder: Path, metrics: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    return path


def plot_classification(folder: Path, tag: str, labels: np.ndarray, scores: np.ndarray, threshold: float) -> list[Path]:
    """PR and ROC curves and the confusion matrix of one evaluation set."""
    plt = _plt()
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    y = np.asarray(labels, bool)
    if y.any() and (~y).any():
        fpr, tpr, _ = roc_curve(y, scores)
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.plot(fpr, tpr)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title=f"ROC {tag}")
        fig.tight_layout()
        fig.savefig(folder / f"roc_{tag}.png", dpi=100)
        plt.close(fig)
        out.append(folder / f"roc_{tag}.png")
        precision, recall = pr_curve(y, scores)
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.plot(recall, precision)
        ax.set(xlabel="recall", ylabel="precision", title=f"PR {tag}", ylim=(0, 1.02))
        fig.tight_layout()
        fig.savefig(folder / f"pr_{tag}.png", dpi=100)
        plt.close(fig)
        out.append(folder / f"pr_{tag}.png")
    c = confusion(y, scores, threshold)
    m = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
    fig, ax = plt.subplots(figsize=(3.5, 3.2))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["no drone", "drone"], yticklabels=["no drone", "drone"],
           xlabel="predicted", ylabel="true", title=f"{tag} @ {threshold:.2f}")
    fig.tight_layout()
    fig.savefig(folder / f"confusion_{tag}.png", dpi=100)
    plt.close(fig)
    out.append(folder / f"confusion_{tag}.png")
    return out


def draw_samples(folder: Path, tag: str, images: list[np.ndarray], detections: list[tuple[np.ndarray, np.ndarray]],
                 truths: list[np.ndarray], scores: np.ndarray, min_box: float = 0.25, cols: int = 4) -> Path:
    """A grid of RGB images with truth boxes (green) and predicted boxes (red, score) drawn."""
    tiles = []
    for img, (boxes, bscores), gt, s in zip(images, detections, truths, scores):
        im = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        h, w = im.shape[:2]
        scale = 256 / max(h, w)
        im = cv2.resize(im, (int(w * scale), int(h * scale)))
        h, w = im.shape[:2]
        for b in gt:
            cv2.rectangle(im, (int(b[0] * w), int(b[1] * h)), (int(b[2] * w), int(b[3] * h)), (0, 200, 0), 2)
        for b, bs in zip(boxes, bscores):
            if bs < min_box:
                continue
            p1, p2 = (int(b[0] * w), int(b[1] * h)), (int(b[2] * w), int(b[3] * h))
            cv2.rectangle(im, p1, p2, (0, 0, 255), 1)
            cv2.putText(im, f"{bs:.2f}", (p1[0], max(p1[1] - 2, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 255), 1)
        cv2.putText(im, f"frame {s:.2f}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 2)
        cv2.putText(im, f"frame {s:.2f}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        tile = np.full((256, 256, 3), 255, np.uint8)
        tile[:h, :w] = im
        tiles.append(tile)
    while len(tiles) % cols:
        tiles.append(np.full((256, 256, 3), 255, np.uint8))
    rows = [np.concatenate(tiles[i:i + cols], axis=1) for i in range(0, len(tiles), cols)]
    grid = np.concatenate(rows, axis=0) if rows else np.full((256, 256, 3), 255, np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"samples_{tag}.png"
    cv2.imwrite(str(path), grid)
    return path
