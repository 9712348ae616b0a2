"""Render ``models/README.md`` from the shipped models' cards (and the bench results)."""

from __future__ import annotations

import json
from pathlib import Path

from detectors.card import ModelCard
from trainer.common import CARD_METRICS

COMMAND = ".venv/bin/python -m trainer.make_models   # = make models"

TARGETS = {
    "audio": [("drone_audio_alemadi.test.f1", 0.95, "F1, drone_audio_alemadi test split"),
              ("droneprint_audio.all.recall", 0.90, "recall per 1 s window, droneprint_audio (all; never trained on)")],
    "vision": [("drone_bird_cls.test.f1", 0.90, "frame F1, drone_bird_cls test split"),
               ("drone_net.test.ap50", 0.70, "box AP@0.5, drone_net test split")],
}


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def render(models: Path, bench: Path = Path("bench/results/models.json")) -> str:
    lines = ["# Shipped default models", "",
             "Built by one recorded command from `../shared/data` (+ synthetic data):", "", "```", COMMAND, "```", "",
             "Processors and the demo load `models/vision.onnx` and `models/audio.onnx` by default; each `.json` "
             "beside a model is its card (input spec, thresholds, metrics, training-data digest, sha256).", "",
             "**Licence of the training data:** none of the development datasets carries a licence for "
             "redistribution (see each card's `data`). These models are for evaluation; retrain on your own data "
             "for production (`skysentry retrain --kind audio|vision --data DIR`).", ""]
    speed = json.loads(bench.read_text()) if bench.is_file() else {}
    for name in ("audio", "vision"):
        path = models / f"{name}.onnx"
        if not path.is_file():
            continue
        card = ModelCard.load(path)
        m = card.metrics
        lines += [f"## {name}: `{path.name}` version {card.version}", "",
                  f"{path.stat().st_size / 1e6:.2f} MB, input `{card.input.name}` {card.input.dtype} "
                  f"{card.input.shape}, outputs {card.outputs}, report threshold {card.thresholds.report}; "
                  f"ONNX Runtime vs PyTorch parity max |diff| = {card.parity_max_abs_diff:.2e}; "
                  f"trained in {m.get('train_seconds') or 0:.0f} s on a shared 2-core CPU"
                  + (" (epochs on cached frozen-backbone features; building that cache took ~20 min more "
                     "under load)" if name == "vision" else "") + ".", "",
                  "| target | measured | required |", "|---|---|---|"]
        for key, need, what in TARGETS[name]:
            v = m.get(key)
            ok = "✅" if v is not None and v >= need else "❌"
            lines.append(f"| {what} | {_fmt(v)} {ok} | ≥ {need} |")
        lines += ["", "All test-split metrics (window level for audio, frame level / boxes for vision):", "",
                  "| set | n | precision | recall | F1 | ROC-AUC | TPR@FPR 1 % | TPR@FPR 5 % | AP@0.5 | AP@0.5:0.95 |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        sets = sorted({k[: -len(suffix) - 1] for k in m for suffix in CARD_METRICS if k.endswith("." + suffix)})
        for s in sets:
            row = [m.get(f"{s}.{k}") for k in ("n", "precision", "recall", "f1", "roc_auc", "tpr_at_fpr_0.01",
                                               "tpr_at_fpr_0.05", "ap50", "ap50_95")]
            row[0] = int(row[0]) if row[0] is not None else None
            lines.append(f"| {s} | " + " | ".join(_fmt(v) for v in row) + " |")
        s = speed.get(name)
        if s:
            lines += ["", f"CPU throughput (`bench/models.py`, onnxruntime, {s.get('threads')} threads, {s.get('cpu', '')}): "
                      f"{s['batch_1']['windows_per_s']:.1f} windows/s at batch 1, "
                      f"{s['batch_32']['windows_per_s']:.1f} windows/s at batch 32."]
        lines += ["", "Reproduce a number: `skysentry eval --model models/%s.onnx --data ../shared/data/<set> "
                  "--split test --json` (droneprint_audio: no `--split`, it is held out whole)." % name, ""]
    lines += ["## Status of the targets", "",
              "* vision meets both targets.",
              "* audio meets the droneprint recall target but **not** F1 ≥ 0.95 on drone_audio_alemadi's test split "
              "(144 windows: 45 drone, 99 background). Its false alarms are tonal ESC-50 sounds (insects, siren, "
              "train, engine, cat, helicopter); ROC-AUC is ~0.99, so it is a ranking problem near the top, not a "
              "threshold one. Recipes tried (all measured on the same test split): width 12, 15 epochs, 80 "
              "synthetic clips: F1 0.841 / droneprint recall 0.800; the shipped recipe: 0.852 / 0.983; selection and "
              "threshold on the real validation windows + 3x hard-negative repetition (width 12 or 16): 0.875 / "
              "0.800. Next: more hard negatives (full ESC-50 tonal classes), a larger model trained longer on a "
              "machine with free cores, and cross-validation by group to tell progress from split noise.", "",
              "## Caveats", "",
              "* The audio drones of drone_audio_alemadi are two toy drones indoors; droneprint_audio (outdoor, "
              "five drone types) is the domain-shift check and has no negatives, so it measures recall only.",
              "* drone_bird_cls separates studio/product drone photos from nature bird photos; its F1 over-states "
              "sky-scene performance. drone_net has no negatives (AP and recall only).",
              "* Split: 80/10/10 by the `group` column of files.csv (seeded hash of the group, seed 1337), so no "
              "source recording / shoot / near-duplicate cluster straddles two splits.", ""]
    return "\n".join(lines)
