"""The vision model's second stage: a classifier of native-resolution candidate regions.

Why: the stage-1 head (:class:`trainer.vision_model.FieldDetector`) finds targets of a few pixels
on the frozen full-frame features, but at 12-30 px it cannot tell a drone from a bird, an
airplane or a helicopter well (validation: a drone box in ~20 % of confuser frames). The second
stage resamples each of stage 1's top candidates from the original pixels to 96 px
(:func:`~trainer.vision_model.crop_regions`, the same op the served graph runs) and classifies
it with the whole ImageNet EfficientNet-Lite0 (frozen) and a small MLP: background or a class.

Training regions, all from train/val clips and images of the group split:

* every ``label_step``-th labelled frame of every field clip: the target's region, in its class
  (jittered in position and size for training);
* stage 1's candidates on every ``proposal_step``-th frame that do not touch the label: background
  (the hard negatives: clouds, trees, wires, the edge of the frame);
* DroneNet boxes (drone) and drone_bird_cls images (their object fills the photo: the whole
  image's region, in its class), letterboxed on the canvas as served.

The trunk's pooled features are computed once with ONNX Runtime; the MLP trains in seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detectors.imaging import letterbox
from trainer.data import dataset_quirks, list_items, split_items
from trainer.field_eval import decode_frames, read_labels
from trainer.metrics import box_iou


def _regions(boxes_px: np.ndarray, width: int, height: int) -> np.ndarray:
    import torch

    from trainer.vision_model import candidate_regions

    return candidate_regions(torch.from_numpy(np.asarray(boxes_px, np.float32)), width, height).numpy()


def _jitter(box: np.ndarray, rng) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    s = rng.uniform(0.8, 1.25)
    cx = (box[0] + box[2]) / 2 + rng.uniform(-0.2, 0.2) * w
    cy = (box[1] + box[3]) / 2 + rng.uniform(-0.2, 0.2) * h
    return np.array([cx - s * w / 2, cy - s * h / 2, cx + s * w / 2, cy + s * h / 2], np.float32)


class RegionSet:
    """Regions to classify, kept as the crop trunk's pooled features (5 KB each; crops and
    canvases are not kept), with their class index (0 = background) and group."""

    def __init__(self, trunk) -> None:
        self.trunk = trunk  # ONNX Runtime session of PooledGraph
        self.features: list[np.ndarray] = []  # float32 [1280]
        self.labels: list[int] = []
        self.groups: list[str] = []

    def add(self, canvas: np.ndarray, boxes_px: np.ndarray, labels: list[int], group: str) -> None:
        import torch

        from trainer.vision_model import crop_regions

        if not len(boxes_px):
            return
        h, w = canvas.shape[:2]
        regions = _regions(boxes_px, w, h)
        x = (torch.from_numpy(canvas).permute(2, 0, 1)[None].float() - 127.0) / 128.0
        with torch.no_grad():
            crops = crop_regions(x, torch.from_numpy(regions)[None]).numpy()
        self.features += list(self.trunk.run(None, {"crops": crops})[0])
        self.labels += list(labels)
        self.groups += [group] * len(labels)


def build_regions(video_roots: list[Path], image_roots: list[Path], classes: tuple[str, ...], proposer_onnx: Path,
                  trunk_onnx: Path, *, seed: int, label_step: int = 3, proposal_step: int = 20, width: int = 640, height: int = 512,
                  console=None) -> dict[str, RegionSet]:
    """Train and val :class:`RegionSet` from the field clips and image folders (module docstring)."""
    import cv2
    import onnxruntime as ort

    from trainer.evaluate import read_image, read_yolo

    rng = np.random.default_rng(seed)
    sess = ort.InferenceSession(str(proposer_onnx), providers=["CPUExecutionProvider"])
    trunk = ort.InferenceSession(str(trunk_onnx), providers=["CPUExecutionProvider"])
    sets = {"train": RegionSet(trunk), "val": RegionSet(trunk)}
    for root in video_roots:
        labels = read_labels(root)
        for split, items in split_items(list_items(root, "video"), seed).items():
            if split not in sets:
                continue
            for n, it in enumerate(items):
                if console and n % 20 == 0:
                    console.print(f"regions: {root.name} {split} clip {n + 1}/{len(items)}")
                rows = labels.get(it.rel, {})
                cls = classes.index(it.label) + 1 if it.label in classes else 0
                cap = cv2.VideoCapture(str(it.path))

                def wanted(i: int, rows=rows) -> bool:  # a labelled region or a proposals frame
                    return ((i + 1) % label_step == 0 and i + 1 in rows) or (i + 1) % proposal_step == 0

                for i, rgb in decode_frames(cap, wanted):
                    if rgb is None:
                        continue
                    f = i + 1  # labels.csv frames are 1-based
                    want_label = f % label_step == 0 and f in rows
                    want_prop = f % proposal_step == 0
                    canvas, lb = letterbox(rgb, width, height)
                    truth = np.zeros((0, 4), np.float32)
                    if f in rows:
                        x, y, w, h = rows[f]
                        truth = np.array([[x, y, x + w, y + h]], np.float32) * lb.scale + [lb.dx, lb.dy, lb.dx, lb.dy]
                    boxes, labs = [], []
                    if want_label and cls:
                        boxes.append(_jitter(truth[0], rng) if split == "train" else truth[0])
                        labs.append(cls)
                    if want_prop:
                        props, obj = sess.run(None, {"image": canvas[None]})
                        props, obj = props[0], obj[0]
                        far = (box_iou(props, truth).max(axis=1) < 0.1) if len(truth) else np.ones(len(props), bool)
                        for b in props[far & (obj >= 0.02)]:
                            boxes.append(b)
                            labs.append(0)
                    sets[split].add(canvas, np.array(boxes, np.float32).reshape(-1, 4), labs, it.group)
                cap.release()
    for root in image_roots:
        items = list_items(root, "image")
        crop = dataset_quirks(root).get("crop_bottom", 0)
        for split, its in split_items(items, seed).items():
            if split not in sets:
                continue
            for it in its:
                if it.label not in classes and it.label != "drone":
                    continue
                rgb = read_image(it.path, crop)
                canvas, lb = letterbox(rgb, width, height)
                gt = read_yolo(it.path, rgb.shape[0] + crop if crop else None, crop)
                if gt is None or not len(gt):  # the object fills the photo
                    gt = np.array([[0.1, 0.1, 0.9, 0.9]], np.float32)
                px = gt * [lb.width, lb.height, lb.width, lb.height] * lb.scale + [lb.dx, lb.dy, lb.dx, lb.dy]
                if split == "train":
                    px = np.stack([_jitter(b, rng) for b in px])
                sets[split].add(canvas, px.astype(np.float32), [classes.index(it.label) + 1] * len(px), it.group)
    return sets


def train_mlp(classifier, x_tr: np.ndarray, y_tr: np.ndarray, x_va: np.ndarray, y_va: np.ndarray, *,
              epochs: int = 40, lr: float = 1e-3, seed: int = 0, console=None) -> dict:
    """Fit ``classifier.mlp`` on pooled features with class-balanced cross-entropy; keep the
    epoch with the best validation macro recall (each class counts alike). Returns its numbers."""
    import torch

    torch.manual_seed(seed)
    n_cls = int(classifier.mlp[-1].out_features)
    counts = np.bincount(y_tr, minlength=n_cls).astype(np.float32)
    weight = torch.from_numpy(counts.sum() / np.maximum(counts, 1) / n_cls)
    opt = torch.optim.AdamW(classifier.mlp.parameters(), lr=lr, weight_decay=1e-3)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    xv = torch.from_numpy(x_va)
    best, best_state, rng = (-1.0, None), None, np.random.default_rng(seed)
    for epoch in range(epochs):
        classifier.mlp.train()
        for i in np.array_split(rng.permutation(len(xt)), max(1, len(xt) // 256)):
            loss = torch.nn.functional.cross_entropy(classifier.mlp(xt[i]), yt[i], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        classifier.mlp.eval()
        with torch.no_grad():
            pred = classifier.mlp(xv).argmax(dim=1).numpy()
        recalls = [float((pred[y_va == c] == c).mean()) for c in range(n_cls) if (y_va == c).any()]
        macro = float(np.mean(recalls)) if recalls else 0.0
        if macro > best[0]:
            best = (macro, epoch + 1)
            best_state = {k: v.clone() for k, v in classifier.mlp.state_dict().items()}
    classifier.mlp.load_state_dict(best_state)
    classifier.mlp.eval()
    with torch.no_grad():
        pred = classifier.mlp(xv).argmax(dim=1).numpy()
    per_class = {c: float((pred[y_va == c] == c).mean()) for c in range(n_cls) if (y_va == c).any()}
    if console:
        console.print(f"crop classifier: val macro recall {best[0]:.3f} at epoch {best[1]}; per class {per_class}")
    return {"crop_val_macro_recall": best[0], "crop_best_epoch": float(best[1]),
            **{f"crop_val_recall_{c}": v for c, v in per_class.items()}}
