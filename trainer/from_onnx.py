"""Rebuild the PyTorch two-stage vision module from a served ``vision.onnx``.

Why: retraining the region classifier (stage 2) needs stage 1 as a PyTorch module, and a fresh
checkout has no training run's checkpoint, only the shipped graph. The exporter folded every
batch norm into the convolution before it (weight and bias), so such a convolution gets the
folded weight and its batch norm becomes an identity carrying the folded bias (weight 1, mean 0,
variance 1 − eps); other convolutions and linear layers take their tensors as they are. Layers are
matched in the order the graph computes them, which is the order the module runs them, with
every shape checked; :func:`load_served` then compares both on an image before returning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _tensors(graph) -> dict[str, np.ndarray]:
    """Every constant of the graph by name: initializers, Constant nodes and Identity aliases."""
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(a.t)
        elif node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def _run_order(module, example) -> list:
    """The module's Conv2d and Linear layers in the order a forward pass calls them."""
    import torch

    order, hooks = [], []
    for m in module.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            hooks.append(m.register_forward_hook(lambda mod, *_: order.append(mod)))
    with torch.no_grad():
        module(example)
    for h in hooks:
        h.remove()
    return order


def load_served(path: Path, *, height: int | None = None, width: int | None = None):
    """The :class:`~trainer.vision_model.TwoStageDetector` whose export is ``path`` (eval mode,
    no gradients). Raises ``ValueError`` when the graph's layers do not match the module's."""
    import onnx
    import torch

    from trainer.vision_model import HEIGHT, LOCAL_KINDS, WIDTH, CropClassifier, FieldDetector, TwoStageDetector

    height, width = height or HEIGHT, width or WIDTH
    graph = onnx.load(str(path)).graph
    values = _tensors(graph)
    nodes = [n for n in graph.node if n.op_type in ("Conv", "Gemm")]
    example = torch.zeros(1, height, width, 3, dtype=torch.uint8)
    for local in (*LOCAL_KINDS, None):  # every local net a graph may hold, or none (graphs before 20261202.152936)
        served = TwoStageDetector(FieldDetector(height, width, pretrained=False),
                                  CropClassifier(pretrained=False, local=local)).eval()
        layers = _run_order(served, example)
        if len(nodes) == len(layers):
            break
    else:
        raise ValueError(f"{path}: {len(nodes)} Conv/Gemm nodes, the module has {len(layers)} layers")
    bn_after = {}  # a convolution → the batch norm right after it (the exporter folded that pair)
    for seq in served.modules():
        if isinstance(seq, torch.nn.Sequential):
            for a, b in zip(seq, list(seq)[1:]):
                if isinstance(a, torch.nn.Conv2d) and isinstance(b, torch.nn.BatchNorm2d):
                    bn_after[a] = b
    with torch.no_grad():
        for node, layer in zip(nodes, layers):
            w = np.array(values[node.input[1]])
            b = np.array(values[node.input[2]]) if len(node.input) > 2 else None
            if tuple(w.shape) != tuple(layer.weight.shape):
                raise ValueError(f"{path}: {node.name} weight {w.shape} vs {tuple(layer.weight.shape)}")
            layer.weight.copy_(torch.from_numpy(w))
            bn = bn_after.get(layer)
            if bn is not None:  # folded: identity batch norm carrying the bias
                bn.weight.fill_(1.0)
                bn.bias.copy_(torch.from_numpy(b))
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
            elif b is not None:
                layer.bias.copy_(torch.from_numpy(b))
    for p in served.parameters():
        p.requires_grad_(False)
    _check(served, path, height, width)
    return served


def _check(served, path: Path, height: int, width: int, tolerance: float = 1e-3) -> None:
    """Both give the same outputs on a textured image, or ``ValueError``."""
    import onnxruntime as ort
    import torch

    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(128, 40, (1, height // 8, width // 8, 3)), 0, 255).astype(np.uint8)
    image = np.ascontiguousarray(image.repeat(8, axis=1).repeat(8, axis=2))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: image})
    with torch.no_grad():
        ref = served(torch.from_numpy(image))
    worst = max(float(np.max(np.abs(r.numpy() - g))) for r, g in zip(ref, got))
    if worst > tolerance:
        raise ValueError(f"{path}: the rebuilt module differs from the graph by {worst:.2e}")
