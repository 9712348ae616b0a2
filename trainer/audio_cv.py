"""Group cross-validation of audio recipes inside the train + val splits (the test split never
takes part), for choosing a recipe on more than the validation split's 15 negative clips.

    .venv/bin/python -m trainer.audio_cv RECIPES.json [--data-root ../shared/data] [--folds 0,1]
        [--parallel 2] [--out runs/audio-cv]

RECIPES.json maps a name to :class:`~trainer.audio_recipe.Recipe` fields (plus
``synthetic_clips``, default 160). The train + val groups of drone_audio_alemadi fall into
five folds by a hash of the group. Rotation k measures on fold k, picks the checkpoint and the
report threshold on fold k+1 (+ the synthetic validation windows), and trains on the other three
(+ the synthetic training windows; drowned drone clips left out as in training). Per recipe it
prints pooled F1 at the chosen thresholds, mean AP and ROC-AUC of the measured folds, and the
window recall on droneprint_audio at the chosen threshold (the outdoor gate). One JSON line per
rotation goes to ``OUT/results.jsonl``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

FOLDS = 5


def fold_of(group: str) -> int:
    return int.from_bytes(hashlib.sha256(f"cv:{group}".encode()).digest()[:8], "big") % FOLDS


@functools.lru_cache(maxsize=1)  # a pool worker runs several rotations: read the data once
def cv_windows(root: Path, seed: int) -> dict:
    """The train + val windows of ``root`` with their labels, folds and drowned flags."""
    from trainer.data import group_splits, list_items
    from trainer.train_audio import _drowned, load_windows

    items = list_items(root, "audio")
    x, owner = load_windows(items, root.name)
    splits = group_splits(items, seed)  # the trainer's split, so the test groups stay out
    keep = np.array([splits[it.group] != "test" for it in items])[owner]
    owner = owner[keep]
    return {"x": x[keep], "y": np.array([items[o].positive for o in owner]),
            "fold": np.array([fold_of(items[o].group) for o in owner]),
            "drowned": np.array([_drowned(items[o]) for o in owner]),
            "category": np.array([(items[o].meta or {}).get("esc50_category") or "" for o in owner])}


def rotation(name: str, cfg: dict, k: int, data_root: Path, out: Path, seed: int) -> dict:
    import torch

    from trainer.audio_io import read_audio, windows
    from trainer.audio_recipe import Recipe, fit_windows, predict
    from trainer.data import list_items
    from trainer.metrics import average_precision_score, classification_metrics
    from trainer.train_audio import synthetic_windows

    torch.set_num_threads(int(os.environ.get("CV_THREADS", "1")))
    t0 = time.monotonic()
    d = cv_windows(data_root / "drone_audio_alemadi", seed)
    cfg = dict(cfg)
    clips = cfg.pop("synthetic_clips", 160)
    measure, select = d["fold"] == k, d["fold"] == (k + 1) % FOLDS
    train = ~measure & ~select & ~d["drowned"]
    syn = synthetic_windows(clips) if clips else {s: (np.zeros((0, 16000), np.int16), np.zeros(0, bool))
                                                   for s in ("train", "val")}
    x_tr, y_tr = np.concatenate([d["x"][train], syn["train"][0]]), np.concatenate([d["y"][train], syn["train"][1]])
    x_va, y_va = np.concatenate([d["x"][select], syn["val"][0]]), np.concatenate([d["y"][select], syn["val"][1]])
    is_real = np.arange(len(y_va)) < int(select.sum())
    fitted = fit_windows(x_tr, y_tr, x_va, y_va, is_real, Recipe(seed=seed, **cfg), out / name / str(k),
                         title=f"{name} fold {k}")
    p = predict(fitted.model, d["x"][measure])
    y = d["y"][measure]
    outdoor = np.concatenate([windows(read_audio(it.path)) for it in list_items(data_root / "droneprint_audio", "audio")])
    at = fitted.report_at
    m = classification_metrics(y, p, at)
    return {"name": name, "fold": k, "threshold": at, "best_epoch": fitted.best_epoch, "tp": m["tp"], "fp": m["fp"],
            "fn": m["fn"], "tn": m["tn"], "f1": m["f1"], "roc_auc": m["roc_auc"], "ap": average_precision_score(y, p),
            "droneprint_recall": float((predict(fitted.model, outdoor) >= at).mean()),
            "false_alarms": sorted(d["category"][measure][~y & (p >= at)].tolist()),
            "seconds": round(time.monotonic() - t0)}


def summary(rows: list[dict]) -> dict[str, dict]:
    """Per recipe: pooled F1 over the rotations, mean AP / ROC-AUC / droneprint recall."""
    by = defaultdict(list)
    for r in rows:
        by[r["name"]].append(r)
    out = {}
    for name, rs in by.items():
        tp, fp, fn = (sum(r[c] for r in rs) for c in ("tp", "fp", "fn"))
        out[name] = {"rotations": sorted(r["fold"] for r in rs), "pooled_f1": 2 * tp / max(1, 2 * tp + fp + fn),
                     **{f"mean_{c}": float(np.mean([r[c] for r in rs])) for c in ("ap", "roc_auc", "droneprint_recall")}}
    return out


def main(argv: list[str] | None = None) -> None:
    from trainer.data import DEFAULT_SEED

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipes", type=Path, help="JSON: {name: {Recipe fields..., synthetic_clips}}")
    ap.add_argument("--data-root", type=Path, default=Path(os.environ.get("SKYSENTRY_DATA", "../shared/data")))
    ap.add_argument("--folds", default="0,1", help="rotations to run, comma-separated (0-4)")
    ap.add_argument("--parallel", type=int, default=1, help="rotations at once (each CV_THREADS torch threads)")
    ap.add_argument("--out", type=Path, default=Path("runs/audio-cv"))
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args(argv)
    if not (args.data_root / "drone_audio_alemadi").is_dir():
        raise SystemExit(f"drone_audio_alemadi not found under {args.data_root}; pass --data-root")
    recipes = json.loads(args.recipes.read_text())
    folds = [int(f) for f in args.folds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(n, c, k, args.data_root, args.out, args.seed) for k in folds for n, c in recipes.items()]
    rows = []
    with ProcessPoolExecutor(args.parallel) as pool, open(args.out / "results.jsonl", "a") as log:
        for r in pool.map(rotation, *zip(*jobs)):
            log.write(json.dumps(r) + "\n")
            log.flush()
            rows.append(r)
            print(f"{r['name']} rotation {r['fold']}: F1 {r['f1']:.3f} AP {r['ap']:.3f} "
                  f"droneprint {r['droneprint_recall']:.3f} ({r['seconds']} s)", flush=True)
    print(json.dumps(summary(rows), indent=1))


if __name__ == "__main__":
    main()
