"""ONNX export with a parity check against PyTorch, and the model card.

The exported graph takes the serving input as-is (uint8 NHWC images, int16 PCM) with a
dynamic batch axis; ``parity`` runs the same real inputs through PyTorch and ONNX Runtime and
returns the largest absolute difference over every output, which goes into the card.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from detectors.card import DataProvenance, InputSpec, ModelCard, Temporal, Thresholds, sha256_file

OPSET = 17


def export_onnx(module: torch.nn.Module, example: torch.Tensor, path: Path, input_name: str,
                output_names: list[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    dyn = {input_name: {0: "batch"}} | {o: {0: "batch"} for o in output_names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=output_names,
                          dynamic_axes=dyn, opset_version=OPSET, do_constant_folding=True, dynamo=False)
    import onnx

    onnx.checker.check_model(str(path))
    return path


def parity(module: torch.nn.Module, path: Path, inputs: np.ndarray, input_name: str, batch: int = 16) -> float:
    """max |torch − onnxruntime| over all outputs, on ``inputs`` (real data), in batches
    of several sizes so the dynamic batch axis is exercised too."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    worst = 0.0
    module.eval()
    i, sizes = 0, [1, batch, 3]
    k = 0
    while i < len(inputs):
        n = sizes[k % len(sizes)]
        k += 1
        x = inputs[i:i + n]
        i += n
        with torch.no_grad():
            ref = module(torch.from_numpy(np.ascontiguousarray(x)))
        ref = ref if isinstance(ref, (tuple, list)) else (ref,)
        got = sess.run(names, {input_name: x})
        for r, g in zip(ref, got):
            worst = max(worst, float(np.max(np.abs(r.detach().numpy().astype(np.float64) - g))) if g.size else 0.0)
    return worst


def write_card(path: Path, *, name: str, version: str, task: str, input_spec: InputSpec, outputs: list[str],
               metrics: dict, digest: str, data: list[DataProvenance], parity_diff: float,
               thresholds: Thresholds = Thresholds(), notes: str = "", labels: list[str] = ("drone",),
               temporal: Temporal | None = None) -> ModelCard:
    card = ModelCard(name=name, version=version, task=task, labels=list(labels), input=input_spec, outputs=outputs,
                     thresholds=thresholds, temporal=temporal, metrics={k: _num(v) for k, v in metrics.items()},
                     training_data_digest=digest, data=data, parity_max_abs_diff=parity_diff,
                     sha256=sha256_file(path), notes=notes)
    card.save(path)
    return card


def _num(v):
    if v is None:
        return None
    return float(v)
